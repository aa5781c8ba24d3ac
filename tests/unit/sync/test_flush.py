"""The end of the streams (Synchronizer.flush) and input out of order: nothing pending is lost
uncounted, and no arrival order makes the sync stage raise to its caller."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from fusion_pipeline.sync import ApproximateTimePolicy, FusedSet, StreamSync, Synchronizer, SyncSettings

MS = 1_000_000
WAIT = 60 * MS


def _streams(*, radar_required: bool = False, audio: bool = False) -> list[StreamSync]:
    streams = [StreamSync("lidar", required=True), StreamSync("radar", required=radar_required)]
    if audio:
        streams.append(StreamSync("mic", "continuous", sample_rate=1000))
    return streams


def _sync(mode: str, **kwargs: object) -> Synchronizer:
    streams = _streams(**kwargs)  # type: ignore[arg-type]
    settings_ = SyncSettings(mode=mode, reference="lidar", max_wait_ns=WAIT, audio_window_ns=100 * MS)  # type: ignore[arg-type]
    return Synchronizer(settings_, streams)


def _feed(sync: Synchronizer, arrivals: list[tuple[str, int]]) -> list[FusedSet]:
    return [f for name, t in arrivals for f in sync.add(name, t, payload=(name, t))]


def _accounted(sync: Synchronizer, arrivals: list[tuple[str, int]], sets: list[FusedSet]) -> None:
    """After a flush nothing discrete is held: every message is in a set or counted as dropped."""
    held = sync.depths()
    for name in ("lidar", "radar"):
        fed = sum(1 for n, _ in arrivals if n == name)
        used = sum(1 for f in sets if name in f.stamps)
        assert held[name] == 0, name
        assert used + sum(sync.counters.drops.by_stream[name].values()) == fed, name


def _lidar_radar(seconds: int = 3, lidar_phase_ms: int = 60) -> list[tuple[str, int]]:
    """Lidar at 10 Hz, 60 ms after radar's 20 Hz grid: the last lidar message has no radar after it."""
    lidar = [("lidar", (k * 100 + lidar_phase_ms) * MS) for k in range(seconds * 10)]
    radar = [("radar", k * 50 * MS) for k in range(seconds * 20)]
    return sorted(lidar + radar, key=lambda a: a[1])


def test_reference_mode_flush_gives_the_last_set_with_what_arrived() -> None:
    sync = _sync("reference")
    arrivals = _lidar_radar()
    sets = _feed(sync, arrivals)
    assert len(sets) == 29  # the last lidar set waits for a radar message after 2.96 s: none comes
    last = sync.flush()
    assert [f.stamp_ns for f in last] == [2960 * MS]
    assert last[0].stamps == {"lidar": 2960 * MS, "radar": 2950 * MS}  # the nearest one that arrived
    _accounted(sync, arrivals, sets + last)
    assert sync.flush() == []  # nothing left


def test_flush_without_partners_keeps_the_set_partial_and_counts_the_leftovers() -> None:
    sync = _sync("reference", audio=True)
    arrivals = [("radar", 0), ("lidar", 100 * MS)]  # radar: 100 ms before, beyond the 60 ms window
    assert _feed(sync, arrivals) == []
    sync.add("mic", 60 * MS, np.zeros((20, 1), np.float32))  # 60..80 ms: the set waits for more audio
    (fused,) = sync.flush()
    assert fused.presence == {"lidar": True, "radar": False, "mic": False}  # mic: not covered
    assert sync.counters.drops.by_stream["radar"]["flushed"] == 1  # no set can use it
    _accounted(sync, arrivals, [fused])


def test_flush_of_a_required_stream_that_never_came_drops_the_set_counted() -> None:
    sync = _sync("reference", radar_required=True)
    arrivals = [("lidar", 0), ("lidar", 100 * MS)]
    assert _feed(sync, arrivals) == []
    assert sync.flush() == []
    assert sync.counters.sets_missing_required == 2
    assert sync.counters.drops.by_stream["lidar"]["missing_required"] == 2
    _accounted(sync, arrivals, [])


def test_approximate_mode_flush_emits_the_candidate_then_matches_without_ended_streams() -> None:
    sync = _sync("approximate")
    # Radar ends at 100 ms; lidar goes on to 300 ms (within max_wait of each other, so radar stays alive).
    arrivals = [("lidar", 0), ("radar", 2 * MS), ("lidar", 50 * MS), ("radar", 100 * MS), ("lidar", 110 * MS)]
    sets = _feed(sync, arrivals)
    sets += sync.flush()
    assert [sorted(f.stamps.items()) for f in sets] == [
        [("lidar", 0), ("radar", 2 * MS)],
        [("lidar", 110 * MS), ("radar", 100 * MS)],
    ]
    assert sync.counters.drops.by_stream["lidar"]["superseded"] == 1  # 50 ms: between two sets
    _accounted(sync, arrivals, sets)
    # An optional stream that ended early: the required one's remaining messages become sets alone.
    sync = _sync("approximate")
    arrivals = [("lidar", 0), ("radar", 1 * MS), ("lidar", 40 * MS), ("lidar", 80 * MS)]
    sets = _feed(sync, arrivals) + sync.flush()
    assert [f.stamp_ns for f in sets] == [0, 40 * MS, 80 * MS]  # the reference's stamps
    assert [f.presence["radar"] for f in sets] == [True, False, False]
    _accounted(sync, arrivals, sets)


def test_approximate_mode_flush_without_a_required_stream_counts_every_message() -> None:
    sync = _sync("approximate", radar_required=True)
    arrivals = [("lidar", 0), ("lidar", 10 * MS), ("radar", 11 * MS), ("lidar", 30 * MS)]
    sets = _feed(sync, arrivals) + sync.flush()
    assert [sorted(f.stamps.values()) for f in sets] == [[10 * MS, 11 * MS]]
    assert sync.counters.drops.by_stream["lidar"]["flushed"] == 1  # 30 ms: radar had ended
    _accounted(sync, arrivals, sets)


def test_a_stamp_older_than_its_streams_previous_is_dropped_counted_not_raised() -> None:
    policy = ApproximateTimePolicy(["a", "b"])
    assert policy.add("a", 10) == []
    assert [m.stamps for m in policy.add("b", 10)] == [{"a": 10, "b": 10}]
    assert policy.add("a", 5) == []  # late: it would cross the set already emitted, which stands
    assert policy.drops.by_stream["a"]["out_of_order"] == 1
    assert [m.stamps for m in policy.add("a", 30) + policy.add("b", 30)] == [{"a": 30, "b": 30}]
    sync = _sync("reference")
    _feed(sync, [("lidar", 100 * MS), ("radar", 90 * MS), ("radar", 80 * MS)])
    assert sync.counters.drops.by_stream["radar"]["out_of_order"] == 1


def test_audio_chunks_changing_channels_are_kept_apart_not_refused() -> None:
    sync = _sync("reference", audio=True)
    sync.add("mic", 0, np.zeros((100, 2), np.float32))
    sync.add("mic", 100 * MS, np.ones((100, 1), np.float32))  # the device changed: no error
    sync.add("mic", 200 * MS, np.ones((100, 1), np.float32))
    sets = sync.add("lidar", 150 * MS) + sync.add("lidar", 290 * MS) + sync.flush()
    assert [f.presence["mic"] for f in sets] == [False, True]  # at 150 ms it would mix 2 and 1 channels
    assert sets[1].windows["mic"].samples.shape == (100, 1)  # type: ignore[union-attr]


_NAMES = ("lidar", "radar", "mic")


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(_NAMES), st.integers(0, 2_000), st.integers(1, 2)), max_size=60),
    st.sampled_from(["reference", "approximate"]),
    st.integers(1, 4),
)
def test_any_arrival_order_raises_nothing_and_sets_stay_consistent(
    events: list[tuple[str, int, int]], mode: str, queue_size: int
) -> None:
    """Arbitrary stamps in arbitrary order (ms), audio chunks of 1 or 2 channels: no exception, sets in
    stamp order that never reuse or cross a message, and every discrete message accounted for."""
    settings_ = SyncSettings(
        mode=mode,  # type: ignore[arg-type]
        reference="lidar",
        queue_size=queue_size,
        max_wait_ns=WAIT,
        audio_window_ns=100 * MS,
        time_jump_ns=500 * MS,
    )
    sync = Synchronizer(settings_, _streams(audio=True))
    arrivals, sets = [], []
    for index, (name, ms, channels) in enumerate(events):
        if name == "mic":
            sets += sync.add(name, ms * MS, np.zeros((10 * channels, channels), np.float32))
        else:
            arrivals.append((name, ms * MS))
            sets += sync.add(name, ms * MS, payload=(name, ms * MS, index))
    sets += sync.flush()
    last_used = dict.fromkeys(_NAMES, -1)
    for fused in sets:
        assert fused.presence["lidar"] and fused.stamp_ns == fused.stamps["lidar"]
        for name, t in fused.stamps.items():
            payload_name, payload_t, index = fused.payloads[name]  # type: ignore[misc]
            assert (payload_name, payload_t) == (name, t)
            assert index > last_used[name], "sets reuse or cross a message"
            last_used[name] = index
    _accounted(sync, arrivals, sets)
    assert sync.counters.sets_full + sync.counters.sets_partial == len(sets)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 2), st.integers(0, 50)), max_size=40),
    st.integers(1, 4),
    st.one_of(st.none(), st.integers(0, 15)),
)
def test_the_policy_takes_any_arrival_order(
    events: list[tuple[int, int]], queue_size: int, max_interval: int | None
) -> None:
    """ApproximateTimePolicy fed arbitrary stamps in arbitrary order: no exception; sets hold one
    message per stream, never reuse or cross one, respect max_interval; each message is accounted for."""
    streams = ["s0", "s1", "s2"]
    policy = ApproximateTimePolicy(streams, queue_size, max_interval)
    sets = [m for index, (i, t) in enumerate(events) for m in policy.add(streams[i], t, payload=index)]
    last = dict.fromkeys(streams, (-1, -1))  # (stamp, arrival index) of the message used last
    for m in sets:
        assert set(m.stamps) == set(streams)
        if max_interval is not None:
            assert max(m.stamps.values()) - min(m.stamps.values()) <= max_interval
        for name in streams:
            used = (m.stamps[name], m.payloads[name])
            assert used[0] >= last[name][0] and used[1] > last[name][1], "sets cross or reuse"  # type: ignore[operator]
            last[name] = used  # type: ignore[assignment]
    assert len(sets) * len(streams) + policy.drops.total() + len(policy.drain()) == len(events)
