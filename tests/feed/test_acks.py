"""AckTracker: which subscribed topics BTSE left out of its acknowledgement."""

from __future__ import annotations

from collector.feed.acks import AckTracker


def test_an_ack_in_another_order_leaves_nothing_out() -> None:
    t = AckTracker()
    t.sent("c#0", ["a", "b", "c"])
    assert t.acked("c#0", ["c", "a", "b"]) == ()
    assert t.outstanding("c#0") == 0


def test_omitted_topics_are_returned_once() -> None:
    t = AckTracker()
    t.sent("c#0", ["a", "nope", "b"])
    assert t.acked("c#0", ["b", "a"]) == ("nope",)
    assert t.acked("c#0", ["b", "a"]) == ()  # nothing outstanding any more


def test_each_ack_answers_the_request_it_shares_topics_with() -> None:
    t = AckTracker()
    t.sent("c#0", ["a", "b"])
    t.sent("c#0", ["x"])  # a resync subscribe sent before the first ack came back
    assert t.acked("c#0", ["x"]) == ()
    assert t.acked("c#0", ["a"]) == ("b",)


def test_an_empty_ack_refuses_the_oldest_request_and_a_disconnect_forgets() -> None:
    t = AckTracker()
    t.sent("c#0", ["quote"])
    t.sent("c#0", ["a"])
    assert t.acked("c#0", []) == ("quote",)
    t.reset("c#0")
    assert t.acked("c#0", []) == ()
    assert t.acked("other#0", ["a"]) == ()
