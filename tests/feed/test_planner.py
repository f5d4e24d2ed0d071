import pytest

from collector.feed.planner import ConnectionPlan, plan, split, topics_of


def _topics(n: int) -> list[str]:
    return [f"update:S{i}-USD_0" for i in range(n)]


def test_topics_fit_one_connection_per_server() -> None:
    p = plan({"spot_oss": _topics(3), "spot": ["tradeHistoryApi:BTC-USD"]}, 100)
    assert p.connections == [
        ConnectionPlan("spot#0", "spot", ("tradeHistoryApi:BTC-USD",)),
        ConnectionPlan("spot_oss#0", "spot_oss", tuple(_topics(3))),
    ]


def test_topics_are_spread_within_the_limit_and_none_is_lost() -> None:
    topics = _topics(250)
    p = plan({"spot_oss": topics}, 100)
    assert [c.conn_id for c in p.connections] == ["spot_oss#0", "spot_oss#1", "spot_oss#2"]
    assert all(len(c.topics) <= 100 for c in p.connections)
    assert sorted(topics_of(p.connections)) == sorted(topics)
    # round robin: sizes differ by at most one
    sizes = [len(c.topics) for c in p.connections]
    assert max(sizes) - min(sizes) <= 1


def test_duplicates_are_kept_once_and_empty_servers_skipped() -> None:
    p = plan({"a": ["x", "x", "y"], "b": []}, 100)
    assert p.connections == [ConnectionPlan("a#0", "a", ("x", "y"))]


def test_min_connections_never_exceeds_topic_count() -> None:
    p = plan({"a": ["x", "y"]}, 100, min_connections={"a": 5})
    assert len(p.connections) == 2


def test_split_after_1007_moves_half_the_topics_to_a_new_connection() -> None:
    p = plan({"spot_oss": _topics(4), "futures_oss": ["update:BTC-PERP_0"]}, 100)
    before_other = p.by_id("futures_oss#0")
    result = split(p, "spot_oss#0")
    assert result is not None
    kept, new = result
    assert kept.conn_id == "spot_oss#0" and new.conn_id == "spot_oss#1"
    assert set(kept.topics) | set(new.topics) == set(_topics(4))
    assert not set(kept.topics) & set(new.topics)
    assert p.by_id("futures_oss#0") == before_other
    # ids stay unique after further splits
    assert split(p, "spot_oss#1") is not None
    assert [c.conn_id for c in p.for_server("spot_oss")] == [
        "spot_oss#0",
        "spot_oss#1",
        "spot_oss#2",
    ]
    assert split(p, "spot_oss#2") is None  # one topic left: cannot split


def test_bad_limit_and_unknown_connection() -> None:
    with pytest.raises(ValueError, match="max_topics"):
        plan({"a": ["x"]}, 0)
    with pytest.raises(KeyError, match="nope"):
        plan({"a": ["x"]}).by_id("nope")
