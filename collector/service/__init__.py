"""The service edge: sd_notify, health state, metrics, the /healthz + /metrics server, the
watchdog policy and the event-loop lag monitor. The daemon (``daemon.py``) wires them to the
feed, pipeline and storage."""

# The daemon's own shutdown deadline (stop reading, drain, flush, rename, STOPPING=1). It must
# be shorter than TimeoutStopSec=30 in deploy/btse-collector.service, after which systemd kills.
SHUTDOWN_TIMEOUT_S = 20.0
