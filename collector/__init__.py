"""btse-collector: a streaming market-data collector for BTSE.

Data flows through the package in this order::

    specs -> protocol -> feed -> pipeline -> storage -> service

``specs`` and ``protocol`` are pure (no asyncio, no sockets); ``feed`` holds the only
network code; ``pipeline``, ``storage`` and ``service`` run the daemon around them.
"""

__version__ = "0.1.0"
