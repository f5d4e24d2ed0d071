"""Child process for test_kill: writes trades with consecutive ids forever, flushing often.

Resumes after the highest id already in the store. After each flush returns it prints
``flushed <last id>`` so the parent knows what must survive a SIGKILL.
"""

from __future__ import annotations

import random
import sys

from collector import logs
from collector.storage import Store

T0_US = 1_700_000_000_000_000


def main() -> None:
    data_dir, seed = sys.argv[1], int(sys.argv[2])
    rng = random.Random(seed)
    logs.configure("error")  # logs go to stderr; stdout is the protocol with the parent
    store = Store(data_dir, rotate_max_bytes=20_000, row_group_rows=300)
    # this writer's ids grow with its trade times: the newest stored trade has the highest id
    newest = store.newest_trades().get(("spot", "BTC-USD"))
    next_id = max(map(int, newest[1])) + 1 if newest else 1
    print(f"started {next_id}", flush=True)
    while True:
        for _ in range(rng.randint(1, 5)):
            n = rng.randint(1, 60)
            ids = list(range(next_id, next_id + n))
            next_id += n
            store.append("trades", {
                "exchange": ["btse"] * n, "product": ["spot"] * n, "symbol": ["BTC-USD"] * n,
                "timestamp": [T0_US + i for i in ids], "local_timestamp": [T0_US + i * 1000 for i in ids],
                "id": [str(i) for i in ids], "side": ["buy"] * n, "price": [1.0 + i for i in ids],
                "amount": [0.25] * n,
            })
        store.flush()
        print(f"flushed {next_id - 1}", flush=True)


if __name__ == "__main__":
    main()
