"""ReplayOrder: any arrival order comes out in send order; holes are skipped after a timeout, counted."""

from hypothesis import given
from hypothesis import strategies as st

from fusion_pipeline.sync import ReplayOrder

SECOND = 1_000_000_000


@given(st.permutations(list(range(40))))
def test_any_arrival_order_is_released_in_send_order(arrival: list[int]) -> None:
    order: ReplayOrder[int] = ReplayOrder()
    out = [item for seq in arrival for item in order.push(seq, seq, now_ns=0)]
    assert out == list(range(40))
    assert order.counters.replay_gaps == 0 and order.counters.replay_late == 0


def test_release_happens_as_soon_as_the_hole_fills() -> None:
    order: ReplayOrder[str] = ReplayOrder()
    assert order.push(1, "b", 0) == []
    assert order.push(2, "c", 0) == []
    assert order.push(0, "a", 0) == ["a", "b", "c"]
    assert order.push(None, "live", 0) == ["live"]  # no replay_seq: passes straight through
    assert order.counters.replay_held_max == 3


def test_a_hole_that_never_fills_is_skipped_after_the_timeout() -> None:
    order: ReplayOrder[int] = ReplayOrder(gap_timeout_ns=SECOND)
    order.push(0, 0, 0)
    assert order.push(2, 2, 10) == [] and order.push(3, 3, 20) == []
    assert order.expire(10 + SECOND - 1) == []  # not yet
    assert order.expire(10 + SECOND) == [2, 3]
    assert order.counters.replay_gaps == 1
    assert order.push(1, 1, 2 * SECOND) == [1]  # the lost one arrives after all: on at once, counted
    assert order.counters.replay_late == 1
    assert order.push(4, 4, 2 * SECOND) == [4]


def test_too_many_held_skips_the_hole_at_once() -> None:
    order: ReplayOrder[int] = ReplayOrder(max_held=3)
    assert [order.push(seq, seq, 0) for seq in (1, 2, 3)] == [[], [], []]
    assert order.push(5, 5, 0) == [1, 2, 3]  # four held > 3: index 0 is given up
    assert order.counters.replay_gaps == 1
    assert order.push(4, 4, 0) == [4, 5]


def test_a_bad_or_repeated_send_index_is_dropped_counted_never_raised() -> None:
    order: ReplayOrder[str] = ReplayOrder()
    for bad in ("7", 1.5, -1, True, [2], 2**64):
        assert order.push(bad, "forged", 0) == []  # type: ignore[arg-type]
    assert order.counters.replay_bad_seq == 6
    assert order.push(1, "b", 0) == []
    assert order.push(1, "b again", 0) == []  # the one held first stays
    assert order.counters.replay_duplicates == 1
    assert order.push(0, "a", 0) == ["a", "b"]
    assert order.counters.replay_gaps == 0
