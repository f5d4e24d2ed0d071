"""The service edge: sd_notify, health state, metrics, the /healthz + /metrics server, the
watchdog policy and the event-loop lag monitor. The daemon (``daemon.py``) wires them to the
feed, pipeline and storage."""
