"""AckTracker: which subscribed topics BTSE left out of its acknowledgement."""

from __future__ import annotations

from collector.feed.acks import AckTracker


def test_an_ack_in_another_order_leaves_nothing_out() -> None:
    t = AckTracker(grace=2.0)
    t.sent("c#0", ["a", "b", "c"])
    t.acked("c#0", ["c", "a", "b"], now=10.0)
    assert t.outstanding("c#0") == 0
    assert t.refused(now=100.0) == []


def test_omitted_topics_are_refused_after_the_grace_and_only_once() -> None:
    t = AckTracker(grace=2.0)
    t.sent("c#0", ["a", "nope", "b"])
    t.acked("c#0", ["b", "a"], now=10.0)
    assert t.refused(now=11.0) == []  # the server may still ack the rest in another frame
    assert t.refused(now=12.0) == [("c#0", "nope")]
    assert t.refused(now=99.0) == []


def test_an_ack_split_over_frames_refuses_nothing() -> None:
    t = AckTracker(grace=2.0)
    t.sent("c#0", ["a", "b", "c"])
    for topic in ("b", "a", "c"):
        t.acked("c#0", [topic], now=10.0)
    assert t.outstanding("c#0") == 0 and t.refused(now=50.0) == []


def test_a_topic_in_two_requests_needs_two_acks() -> None:
    t = AckTracker(grace=1.0)
    t.sent("c#0", ["a", "b"])
    t.sent("c#0", ["a"])  # a resync subscribe sent before the first ack came back
    t.acked("c#0", ["a", "b"], now=5.0)
    assert t.outstanding("c#0") == 1
    t.acked("c#0", ["a"], now=5.1)
    assert t.outstanding("c#0") == 0


def test_an_empty_ack_refuses_the_oldest_request_and_a_disconnect_forgets() -> None:
    t = AckTracker(grace=0.0)
    t.sent("c#0", ["quote"])
    t.sent("c#0", ["a"])
    t.acked("c#0", [], now=1.0)
    assert t.refused(now=1.0) == [("c#0", "quote")]
    t.acked("c#0", ["x"], now=1.0)
    t.sent("c#0", ["b", "c"])
    t.acked("c#0", ["b"], now=1.0)
    assert t.reset("c#0") == ["c"]  # left out by an ack that came; "a" was never answered
    assert t.outstanding("c#0") == 0
    t.acked("other#0", ["a"], now=1.0)
    assert t.refused(now=9.0) == []
