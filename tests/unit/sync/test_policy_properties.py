"""Properties of ApproximateTimePolicy over random multi-stream stamp sequences (hypothesis).

The reference is a brute-force statement of what ROS' ApproximateTime promises (age penalty 0, no
drops): every emitted set is *contiguous* to the previous one (on at least one stream it uses the
very next message) and has the smallest span among all such sets that do not cross the previous one.
Ties may go either way, so each set is checked against the set actually emitted before it."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from fusion_pipeline.sync import ApproximateTimePolicy

FLUSH = 10_000  # far later than any generated stamp: lets every provable set out


def stream_stamps(max_len: int = 5, high: int = 40) -> st.SearchStrategy[list[int]]:
    return st.lists(st.integers(0, high), min_size=0, max_size=max_len).map(sorted)


def multi_streams(max_streams: int = 3, max_len: int = 5) -> st.SearchStrategy[list[list[int]]]:
    return st.integers(1, max_streams).flatmap(
        lambda n: st.lists(stream_stamps(max_len), min_size=n, max_size=n)
    )


def names(n: int) -> list[str]:
    return [f"s{i}" for i in range(n)]


def merged(stamps: list[list[int]]) -> list[tuple[str, int]]:
    """Stamp-sorted arrival order (ties by stream)."""
    msgs = [(t, i) for i, seq in enumerate(stamps) for t in seq]
    return [(f"s{i}", t) for t, i in sorted(msgs)]


def run(policy: ApproximateTimePolicy, arrivals: list[tuple[str, int]]) -> list[tuple[int, ...]]:
    """Feed (stream, stamp) with payload = index within its stream; return sets as index tuples."""
    seen = dict.fromkeys(policy.streams, 0)
    out = []
    for stream, stamp in arrivals:
        for m in policy.add(stream, stamp, payload=seen[stream]):
            out.append(tuple(m.payloads[n] for n in policy.streams))  # type: ignore[misc]
        seen[stream] += 1
    return out


def with_flush(stamps: list[list[int]]) -> list[list[int]]:
    return [[*seq, FLUSH] for seq in stamps]


def brute_force_min_span(stamps: list[list[int]], previous: tuple[int, ...]) -> int | None:
    """Smallest span among sets after `previous` (index per stream, -1 = none yet) that use the
    next message on at least one stream; None when there is no such set."""
    choices = [range(prev + 1, len(seq)) for prev, seq in zip(previous, stamps, strict=True)]
    best = None
    for combo in itertools.product(*choices):
        if not any(i == prev + 1 for i, prev in zip(combo, previous, strict=True)):
            continue
        times = [seq[i] for seq, i in zip(stamps, combo, strict=True)]
        span = max(times) - min(times)
        best = span if best is None else min(best, span)
    return best


def span(stamps: list[list[int]], combo: tuple[int, ...]) -> int:
    times = [seq[i] for seq, i in zip(stamps, combo, strict=True)]
    return max(times) - min(times)


@settings(max_examples=300, deadline=None)
@given(multi_streams())
def test_each_set_is_the_optimal_contiguous_set(stamps: list[list[int]]) -> None:
    full = with_flush(stamps)
    n = len(full)
    out = run(ApproximateTimePolicy(names(n), queue_size=100), merged(full))
    # The flush set (every stream's last message, span 0) always comes out last.
    assert out and out[-1] == tuple(len(seq) - 1 for seq in full)
    previous = (-1,) * n
    for combo in out:
        assert all(i > p for i, p in zip(combo, previous, strict=True)), "sets cross or reuse"
        assert any(i == p + 1 for i, p in zip(combo, previous, strict=True)), "set not contiguous"
        assert span(full, combo) == brute_force_min_span(full, previous)
        previous = combo


@st.composite
def interleaving(draw: st.DrawFn, stamps: list[list[int]]) -> list[tuple[str, int]]:
    """Any arrival order that keeps each stream's own order."""
    labels = [i for i, seq in enumerate(stamps) for _ in seq]
    order = draw(st.permutations(labels))
    position = [0] * len(stamps)
    arrivals = []
    for i in order:
        arrivals.append((f"s{i}", stamps[i][position[i]]))
        position[i] += 1
    return arrivals


@settings(max_examples=200, deadline=None)
@given(multi_streams(max_streams=4, max_len=6).flatmap(lambda s: st.tuples(st.just(s), interleaving(s))))
def test_output_depends_on_stamps_not_on_interleaving(case: tuple[list[list[int]], list]) -> None:
    stamps, arrivals = case
    n = len(stamps)
    flush = [(f"s{i}", FLUSH) for i in range(n)]
    sorted_out = run(ApproximateTimePolicy(names(n), queue_size=100), merged(stamps) + flush)
    shuffled_out = run(ApproximateTimePolicy(names(n), queue_size=100), arrivals + flush)
    assert shuffled_out == sorted_out


@settings(max_examples=200, deadline=None)
@given(
    multi_streams(max_streams=4, max_len=8),
    st.integers(1, 4),
    st.one_of(st.none(), st.integers(0, 15)),
    st.sampled_from([0.0, 0.1, 0.5, 2.0]),
)
def test_invariants_with_small_queues(
    stamps: list[list[int]], queue_size: int, max_interval: int | None, age_penalty: float
) -> None:
    n = len(stamps)
    policy = ApproximateTimePolicy(names(n), queue_size, max_interval, age_penalty)
    out = run(policy, merged(with_flush(stamps)))
    previous = (-1,) * n
    for combo in out:
        assert all(i > p for i, p in zip(combo, previous, strict=True)), "sets cross or reuse"
        if max_interval is not None:
            assert span(with_flush(stamps), combo) <= max_interval
        previous = combo
    # Every message is emitted once, dropped once (counted), or still queued.
    emitted = len(out) * n
    dropped = policy.drops.total()
    queued = len(policy.drain())
    assert emitted + dropped + queued == sum(len(seq) + 1 for seq in stamps)


@st.composite
def spaced_streams(draw: st.DrawFn) -> tuple[list[list[int]], list[int]]:
    """Streams whose consecutive stamps are at least their lower bound apart."""
    n = draw(st.integers(2, 3))
    bounds = draw(st.lists(st.integers(0, 6), min_size=n, max_size=n))
    stamps = []
    for bound in bounds:
        gaps = draw(st.lists(st.integers(bound, bound + 8), min_size=1, max_size=6))
        stamps.append(list(itertools.accumulate(gaps)))
    return stamps, bounds


@settings(max_examples=200, deadline=None)
@given(spaced_streams())
def test_lower_bounds_change_when_not_what(case: tuple[list[list[int]], list[int]]) -> None:
    stamps, bounds = case
    n = len(stamps)
    arrivals = merged(with_flush(stamps))
    plain = ApproximateTimePolicy(names(n), queue_size=100)
    bounded = ApproximateTimePolicy(
        names(n), queue_size=100, lower_bound_ns=dict(zip(names(n), bounds, strict=True))
    )
    emitted_after_plain: list[int] = []
    emitted_after_bounded: list[int] = []
    plain_out: list[tuple] = []
    bounded_out: list[tuple] = []
    for k, (stream, stamp) in enumerate(arrivals):
        for policy, out, when in (
            (plain, plain_out, emitted_after_plain),
            (bounded, bounded_out, emitted_after_bounded),
        ):
            got = policy.add(stream, stamp)
            out += [tuple(m.stamps.values()) for m in got]
            when += [k] * len(got)
    assert bounded_out == plain_out
    # Never later, set by set.
    assert all(b <= p for b, p in zip(emitted_after_bounded, emitted_after_plain, strict=True))
