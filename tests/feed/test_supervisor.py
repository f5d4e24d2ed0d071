import json

import pytest
from feed_helpers import JsonFrames, RecordingSink, TinyServer

from collector.feed.supervisor import Supervisor

TOPICS = ["update:A-USD_0", "update:B-USD_0", "update:C-USD_0", "update:D-USD_0"]


def _subscribed(server: TinyServer) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for session, text in server.received:
        if text != "ping":
            frame = json.loads(text)
            if frame["op"] == "subscribe":
                out.setdefault(session, []).extend(frame["args"])
    return out


async def test_topics_are_planned_over_connections_and_a_1007_split_adds_one(
    tiny_server: TinyServer, sink: RecordingSink
) -> None:
    sup = Supervisor(
        {"spot_oss": TOPICS, "spot": ["tradeHistoryApi:A-USD"]},
        {"spot_oss": tiny_server.url, "spot": tiny_server.url},
        sink,
        lambda server: JsonFrames(),
        max_topics_per_connection=2,
    )
    assert sorted(sup.connections) == ["spot#0", "spot_oss#0", "spot_oss#1"]
    assert sup.topic_count == 5
    sup.start()
    try:
        await tiny_server.wait_sessions(3)
        await tiny_server.wait_received(lambda s, t: len(_subscribed(tiny_server)) == 3)
        got = sorted(t for topics in _subscribed(tiny_server).values() for t in topics)
        assert got == sorted([*TOPICS, "tradeHistoryApi:A-USD"])

        conn = sup.conn_for("update:A-USD_0")
        assert conn is not None and conn.conn_id == "spot_oss#0"
        new_id = sup.split("spot_oss#0")
        assert new_id == "spot_oss#2"
        await tiny_server.wait_sessions(4)
        await tiny_server.wait_received(lambda s, t: s == 3 and "subscribe" in t)
        assert sup.connections["spot_oss#0"].topics == ["update:A-USD_0"]
        assert sup.connections["spot_oss#2"].topics == ["update:C-USD_0"]
        assert _subscribed(tiny_server)[3] == ["update:C-USD_0"]
        assert any(
            json.loads(t) == {"op": "unsubscribe", "args": ["update:C-USD_0"]}
            for _, t in tiny_server.received
            if t != "ping"
        )
        assert sup.split("spot_oss#0") is None  # one topic left
        assert sup.split("nope#0") is None

        assert sup.resync("spot_oss#1", "update:B-USD_0") is True
        assert sup.resubscribe_all("spot_oss#1") == 2
    finally:
        await sup.stop(timeout=5)
    assert all(t.done() for t in sup._tasks.values())
    disconnected = [e.conn_id for e in sink.events if e.kind == "disconnected"]
    assert sorted(disconnected) == ["spot#0", "spot_oss#0", "spot_oss#1", "spot_oss#2"]
    assert all(e.detail == "shutdown" for e in sink.events if e.kind == "disconnected")


def test_a_server_without_url_is_a_clear_error(sink: RecordingSink) -> None:
    with pytest.raises(ValueError, match="spot_oss"):
        Supervisor({"spot_oss": ["x"]}, {"spot": "ws://x"}, sink, lambda s: JsonFrames())
