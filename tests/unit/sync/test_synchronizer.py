"""Synchronizer: reference and approximate modes, deadlines for silent sensors, required streams,
time-jump reset, counters, determinism under arrival interleavings, and bad input."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fusion_pipeline.sync import (
    ApproximateTimePolicy,
    FusedSet,
    StreamSync,
    SyncError,
    Synchronizer,
    SyncSettings,
    settings_from_config,
)

MS = 1_000_000
WAIT = 60 * MS
FAR = 10**15  # a tick this late decides every pending set


def discrete_streams(camera_required: bool = False) -> list[StreamSync]:
    return [
        StreamSync("camera", required=camera_required),
        StreamSync("lidar", required=True),
        StreamSync("radar"),
    ]


def reference(**kwargs: object) -> SyncSettings:
    kwargs.setdefault("max_wait_ns", WAIT)
    kwargs.setdefault("reference", "lidar")
    return SyncSettings(mode="reference", **kwargs)  # type: ignore[arg-type]


def periodic(
    period_ms: float, start_ms: float, end_ms: float, jitter_ms: float = 0, seed: int = 0
) -> list[int]:
    rng = random.Random(seed)
    out, k = [], 0
    while start_ms + k * period_ms < end_ms:
        out.append(round((start_ms + k * period_ms + rng.uniform(-jitter_ms, jitter_ms)) * MS))
        k += 1
    return out


def sorted_arrivals(streams: dict[str, list[int]]) -> list[tuple[str, int]]:
    return [(name, t) for t, name in sorted((t, name) for name, seq in streams.items() for t in seq)]


def feed(sync: Synchronizer, arrivals: list[tuple[str, int]], flush: bool = True) -> list[FusedSet]:
    out: list[FusedSet] = []
    for name, t in arrivals:
        out += sync.add(name, t, payload=(name, t))
    if flush:
        out += sync.tick(FAR)
    return out


def summary(sets: list[FusedSet]) -> list[tuple]:
    return [(f.stamp_ns, tuple(sorted(f.stamps.items())), tuple(f.presence.items())) for f in sets]


# -- reference mode ------------------------------------------------------------------------------------


def expected_reference_matches(streams: dict[str, list[int]], ref: str, window: int) -> list[dict[str, int]]:
    """Brute force: per reference stamp in order, the nearest message within `window` among those
    later than the stream's previous match; equal distance goes to the earlier message."""
    used = dict.fromkeys(streams, -1)
    sets = []
    for t in streams[ref]:
        stamps = {ref: t}
        for name, seq in streams.items():
            if name == ref:
                continue
            options = [(abs(x - t), i) for i, x in enumerate(seq) if i > used[name] and abs(x - t) <= window]
            if options:
                _, i = min(options)
                used[name] = i
                stamps[name] = seq[i]
        sets.append(stamps)
    return sets


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from([None, 10 * MS, 25 * MS]))
def test_reference_mode_matches_the_nearest_unused_message(seed: int, max_interval: int | None) -> None:
    rng = random.Random(seed)
    streams = {
        "camera": periodic(33.3, rng.uniform(0, 30), 1500, jitter_ms=4, seed=seed),
        "lidar": periodic(100, rng.uniform(0, 100), 1500, jitter_ms=1, seed=seed + 1),
        "radar": periodic(50, rng.uniform(0, 50), 1500, jitter_ms=12, seed=seed + 2),
    }
    for name in ("camera", "radar"):  # some sensor dropouts
        streams[name] = [t for t in streams[name] if rng.random() > 0.15]
    sync = Synchronizer(reference(max_interval_ns=max_interval, queue_size=100), discrete_streams())
    sets = feed(sync, sorted_arrivals(streams))
    window = WAIT if max_interval is None else max_interval
    assert [f.stamps for f in sets] == expected_reference_matches(streams, "lidar", window)
    for f in sets:
        assert f.presence == {n: n in f.stamps for n in ("camera", "lidar", "radar")}
        assert f.payloads == {n: (n, t) for n, t in f.stamps.items()}
        assert f.stamp_ns == f.stamps["lidar"]


def test_silent_camera_gives_partial_sets_within_the_deadline_and_rejoins() -> None:
    streams = {
        "camera": [t for t in periodic(33.3, 1, 3000) if not 1000 * MS <= t < 2000 * MS],
        "lidar": periodic(100, 0, 3000),
        "radar": periodic(50, 3, 3000, jitter_ms=5, seed=3),
    }
    sync = Synchronizer(reference(), discrete_streams())
    emitted_at: dict[int, int] = {}
    sets: list[FusedSet] = []
    for name, t in sorted_arrivals(streams):
        for f in sync.add(name, t):
            emitted_at[f.stamp_ns] = t
            sets.append(f)
    assert len(sets) >= len(streams["lidar"]) - 1  # the last sweep may still wait for radar
    assert [f.stamp_ns for f in sets] == streams["lidar"][: len(sets)]
    all_stamps = sorted(t for seq in streams.values() for t in seq)
    expected = expected_reference_matches(streams, "lidar", WAIT)
    for f, want in zip(sets, expected, strict=False):
        t = f.stamp_ns
        assert f.stamps == want
        if 1070 * MS <= t <= 1930 * MS:  # no camera frame within max_wait of t
            assert f.presence == {"camera": False, "lidar": True, "radar": True}
        else:
            assert f.complete
        # Never held past the first arrival beyond the deadline.
        first_past_deadline = next(x for x in all_stamps if x > t + WAIT)
        assert emitted_at[t] <= first_past_deadline
    assert sync.counters.sets_partial == sum(not f.complete for f in sets) > 0
    assert sync.counters.sets_full == sum(f.complete for f in sets) > 0


def test_live_tick_emits_at_the_deadline_without_the_silent_stream() -> None:
    sync = Synchronizer(reference(), discrete_streams())
    assert sync.add("lidar", 1000 * MS) == []
    assert sync.next_deadline_ns() == 1000 * MS + WAIT + 1
    assert sync.tick(1000 * MS + WAIT) == []
    (f,) = sync.tick(1000 * MS + WAIT + 1)
    assert f.presence == {"camera": False, "lidar": True, "radar": False}
    assert f.presence_mask(["radar", "camera", "lidar"]).tolist() == [0.0, 0.0, 1.0]
    assert sync.next_deadline_ns() is None
    # The sensors come back: full sets resume, decided by messages alone.
    assert sync.add("lidar", 1100 * MS) == []
    assert sync.add("camera", 1099 * MS) == []
    assert sync.add("radar", 1102 * MS) == []  # radar decided (1102 > 1100); camera may still improve
    (f,) = sync.add("camera", 1133 * MS)
    assert f.stamps == {"lidar": 1100 * MS, "camera": 1099 * MS, "radar": 1102 * MS}
    assert f.complete


def test_lower_bound_decides_without_waiting_for_the_next_message() -> None:
    streams = [StreamSync("camera", lower_bound_ns=30 * MS), StreamSync("lidar", required=True)]
    sync = Synchronizer(reference(), streams)
    sync.add("lidar", 100 * MS)
    # Camera at 99 ms: its next frame is >= 129 ms, farther from 100 ms than 99 ms is.
    (f,) = sync.add("camera", 99 * MS)
    assert f.stamps == {"lidar": 100 * MS, "camera": 99 * MS}
    # Without the bound the same set waits for the camera's next frame.
    sync = Synchronizer(reference(), [StreamSync("camera"), StreamSync("lidar", required=True)])
    sync.add("lidar", 100 * MS)
    assert sync.add("camera", 99 * MS) == []
    (f,) = sync.add("camera", 132 * MS)
    assert f.stamps == {"lidar": 100 * MS, "camera": 99 * MS}


def test_missing_required_stream_means_no_set_and_is_counted() -> None:
    streams = {"camera": [], "lidar": periodic(100, 0, 1000), "radar": periodic(50, 3, 1000)}
    sync = Synchronizer(reference(), discrete_streams(camera_required=True))
    assert feed(sync, sorted_arrivals(streams)) == []
    assert sync.counters.sets_missing_required == len(streams["lidar"])
    assert sync.counters.drops.by_stream["lidar"]["missing_required"] == len(streams["lidar"])
    assert sync.counters.drops.by_stream["radar"]["missing_required"] > 0
    assert sync.counters.sets_full == sync.counters.sets_partial == 0


def test_a_reference_outage_counts_the_others_as_no_reference_a_late_reference_as_too_old() -> None:
    """A 6 s lidar outage booked every camera and radar frame as too_old, which says "raise max_wait_ms
    or find the slow link": they came on time, and no set was opened for them. A reference that is only
    late (a slow link, a clock offset) stays too_old: that advice is right for it."""
    streams = {
        "camera": periodic(33.3, 1, 6000),
        "lidar": [t for t in periodic(100, 0, 6000) if not 1000 * MS <= t < 4000 * MS],
        "radar": periodic(50, 3, 6000),
    }
    sync = Synchronizer(reference(), discrete_streams())
    feed(sync, sorted_arrivals(streams), flush=False)
    camera = sync.counters.drops.by_stream["camera"]
    # Once the lidar is a time jump (1 s) behind the others, the frames of the gap are no_reference.
    assert camera["no_reference"] >= sum(2000 * MS < t < 3900 * MS for t in streams["camera"]), camera
    # Every lidar scan arriving 300 ms after its capture, the others at once.
    steady = {**streams, "lidar": periodic(100, 0, 6000)}
    delay = {"lidar": 300 * MS}
    arrivals = sorted((t + delay.get(n, 0), n, t) for n, stamps in steady.items() for t in stamps)
    late = Synchronizer(reference(), discrete_streams())
    feed(late, [(n, t) for _, n, t in arrivals], flush=False)
    dropped = late.counters.drops.by_stream["camera"]
    before_first_scan = sum(t < 300 * MS for t in steady["camera"])  # the run's start: no reference yet
    assert dropped["too_old"] > 0 and dropped["no_reference"] <= before_first_scan, dropped


def test_queue_overflow_and_superseded_are_counted() -> None:
    sync = Synchronizer(reference(queue_size=3), discrete_streams())
    for k in range(8):
        sync.add("camera", k * MS)
    assert sync.counters.drops.by_stream["camera"]["queue_overflow"] == 5
    (f,) = sync.add("lidar", 6 * MS) + sync.add("radar", 6 * MS) + sync.add("camera", 9 * MS)
    assert f.stamps["camera"] == 6 * MS
    assert sync.counters.drops.by_stream["camera"]["superseded"] == 1  # the 5 ms frame


@pytest.mark.parametrize("wait_ms", [900, 1100])
def test_a_dead_optional_stream_never_stalls_the_sets_whatever_max_wait(wait_ms: int) -> None:
    """With max_wait over queue_size reference periods the open sets overflowed and were dropped,
    each before its deadline: a dead optional radar stopped every set (0 of 50 at 1.1 s)."""
    sync = Synchronizer(reference(max_wait_ns=wait_ms * MS), discrete_streams())
    lidar = periodic(100, 0, 5000)
    sets = feed(sync, [(n, t) for t in lidar for n in ("lidar", "camera")], flush=False)
    assert len(sets) >= len(lidar) - 10  # at most queue_size still open
    assert all(f.presence == {"camera": True, "lidar": True, "radar": False} for f in sets)
    assert sync.counters.drops.by_stream["lidar"]["queue_overflow"] == 0


def test_backward_time_jump_resets_and_is_counted() -> None:
    first = {
        "camera": periodic(33.3, 1, 1000),
        "lidar": periodic(100, 0, 1000),
        "radar": periodic(50, 3, 1000),
    }
    sync = Synchronizer(reference(time_jump_ns=500 * MS), discrete_streams())
    before = feed(sync, sorted_arrivals(first), flush=False)
    assert before and sync.counters.time_jumps == 0
    # A small step back is an out-of-order message, not a jump.
    sync.add("camera", first["camera"][-1] - 10 * MS)
    assert sync.counters.drops.by_stream["camera"]["out_of_order"] == 1
    assert sync.counters.time_jumps == 0
    # The log loops: every stream starts again at 0.
    after = feed(sync, sorted_arrivals(first))
    assert sync.counters.time_jumps == 1
    assert sum(r["reset"] for r in sync.counters.drops.by_stream.values()) > 0
    fresh = feed(Synchronizer(reference(time_jump_ns=500 * MS), discrete_streams()), sorted_arrivals(first))
    assert summary(after) == summary(fresh)


@st.composite
def lagged_order(draw: st.DrawFn, arrivals: list[tuple[str, int]], max_lag: int) -> list[tuple[str, int]]:
    """An arrival order keeping each stream's order where no message arrives after the watermark
    passed its stamp by more than max_lag: arrival key = stamp + delay, non-decreasing per stream."""
    delays = draw(st.lists(st.integers(0, max_lag), min_size=len(arrivals), max_size=len(arrivals)))
    last_key: dict[str, int] = {}
    keyed = []
    for k, ((name, t), delay) in enumerate(zip(arrivals, delays, strict=True)):
        key = max(last_key.get(name, 0), t + delay)
        last_key[name] = key
        keyed.append((key, k, name, t))
    return [(name, t) for _, _, name, t in sorted(keyed)]


def demo_arrivals(seed: int, end_ms: float = 800) -> list[tuple[str, int]]:
    rng = random.Random(seed)
    streams = {
        "camera": [t for t in periodic(33.3, 1, end_ms, 4, seed) if rng.random() > 0.2],
        "lidar": periodic(100, 0, end_ms, 1, seed + 1),
        "radar": [t for t in periodic(50, 3, end_ms, 12, seed + 2) if rng.random() > 0.2],
        "audio": periodic(20, 0, end_ms),
    }
    if rng.random() < 0.5:  # the camera dies for a while
        lo = rng.uniform(0, end_ms) * MS
        streams["camera"] = [t for t in streams["camera"] if not lo <= t < lo + 300 * MS]
    return sorted_arrivals(streams)


def with_audio(streams: list[StreamSync]) -> list[StreamSync]:
    return [*streams, StreamSync("audio", "continuous", sample_rate=8000)]


def feed_audio(sync: Synchronizer, arrivals: list[tuple[str, int]]) -> list[FusedSet]:
    """Audio chunks of 20 ms at 8 kHz whose samples are their global frame index."""
    out: list[FusedSet] = []
    for name, t in arrivals:
        if name == "audio":
            first = t * 8000 // 10**9
            payload: object = np.arange(first, first + 160, dtype=np.float32)[:, None]
        else:
            payload = (name, t)
        out += sync.add(name, t, payload)
    return out + sync.tick(FAR)


def same_sets(a: list[FusedSet], b: list[FusedSet]) -> None:
    assert summary(a) == summary(b)
    for x, y in zip(a, b, strict=True):
        assert x.windows.keys() == y.windows.keys()
        for name, w in x.windows.items():
            v = y.windows[name]
            assert (w.start_ns, w.end_ns) == (v.start_ns, v.end_ns)
            assert (w.samples is None) == (v.samples is None)
            if w.samples is not None:
                np.testing.assert_array_equal(w.samples, v.samples)


@settings(max_examples=25, deadline=None)
@given(
    st.integers(0, 10_000).flatmap(lambda s: st.tuples(st.just(s), lagged_order(demo_arrivals(s), 40 * MS)))
)
def test_reference_mode_is_deterministic_under_bounded_lag(case: tuple[int, list]) -> None:
    # Match window 20 ms, max_wait 60 ms: any arrival lag up to 40 ms gives the same sets.
    seed, shuffled = case
    config = reference(max_interval_ns=20 * MS, audio_window_ns=100 * MS, queue_size=50)
    in_order = feed_audio(Synchronizer(config, with_audio(discrete_streams())), demo_arrivals(seed))
    lagged = feed_audio(Synchronizer(config, with_audio(discrete_streams())), shuffled)
    assert len(in_order) == len([n for n, _ in demo_arrivals(seed) if n == "lidar"])
    same_sets(in_order, lagged)


# -- approximate mode -----------------------------------------------------------------------------------


def approximate(**kwargs: object) -> SyncSettings:
    kwargs.setdefault("max_wait_ns", WAIT)
    return SyncSettings(mode="approximate", **kwargs)  # type: ignore[arg-type]


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000).flatmap(lambda s: st.tuples(st.just(s), st.randoms(use_true_random=False))))
def test_approximate_mode_is_the_policy_and_order_independent_while_all_alive(case: tuple) -> None:
    seed, rnd = case
    arrivals = [(n, t) for n, t in demo_arrivals(seed) if n != "audio"]
    # max_wait longer than the run: no stream is ever declared silent.
    config = approximate(max_wait_ns=10**12, queue_size=100)
    in_order = feed(Synchronizer(config, discrete_streams()), arrivals)
    policy = ApproximateTimePolicy(["camera", "lidar", "radar"], queue_size=100)
    expected = [m.stamps for name, t in arrivals for m in policy.add(name, t)]
    # The final tick passes every deadline: the set still waiting for proof comes out too.
    while policy.candidate_end_ns is not None:
        expected += [m.stamps for m in policy.publish_candidate()]
    assert [f.stamps for f in in_order] == expected
    assert all(f.stamp_ns == max(f.stamps.values()) for f in in_order)
    shuffled = sorted(arrivals, key=lambda a: (a[0], a[1]))  # group by stream, keep each stream's order
    queues = {n: [a for a in shuffled if a[0] == n] for n in ("camera", "lidar", "radar")}
    interleaved = []
    while any(queues.values()):
        name = rnd.choice([n for n, q in queues.items() if q])
        interleaved.append(queues[name].pop(0))
    same_sets(in_order, feed(Synchronizer(config, discrete_streams()), interleaved))


def test_approximate_mode_drops_a_silent_stream_and_takes_it_back() -> None:
    streams = {
        "camera": [t for t in periodic(33.3, 1, 3000) if not 1000 * MS <= t < 2000 * MS],
        "lidar": periodic(100, 0, 3000),
        "radar": periodic(50, 3, 3000),
    }
    # max_wait above the slowest period (lidar, 100 ms): no stream drops out between its messages.
    sync = Synchronizer(approximate(reference="lidar", max_wait_ns=150 * MS), discrete_streams())
    sets = feed(sync, sorted_arrivals(streams), flush=False)
    lidar_stamps = [f.stamp_ns for f in sets]
    assert lidar_stamps == sorted(lidar_stamps) and len(set(lidar_stamps)) == len(lidar_stamps)
    assert all(f.stamp_ns == f.stamps["lidar"] for f in sets)
    assert [f.stamp_ns for f in sets] == streams["lidar"]  # one set per sweep, none lost
    used = sum("camera" in f.stamps for f in sets)
    dropped = sum(sync.counters.drops.by_stream["camera"].values())
    assert used + dropped + sync.depths()["camera"] == len(streams["camera"])
    silent = [f for f in sets if 1100 * MS <= f.stamp_ns < 1900 * MS]
    assert silent and all(f.presence == {"camera": False, "lidar": True, "radar": True} for f in silent)
    around = [f for f in sets if f.stamp_ns < 900 * MS or f.stamp_ns >= 2100 * MS]
    assert around and all(f.complete for f in around)


def test_approximate_mode_with_a_silent_required_stream_emits_nothing_and_counts() -> None:
    streams = {"camera": periodic(33.3, 1, 1000), "lidar": [], "radar": periodic(50, 3, 1000)}
    sync = Synchronizer(approximate(), discrete_streams())
    assert feed(sync, sorted_arrivals(streams)) == []
    drops = sync.counters.drops.by_stream
    assert drops["camera"]["missing_required"] + drops["camera"]["queue_overflow"] > 20
    assert drops["radar"]["missing_required"] > 0


# -- settings, config and bad input ---------------------------------------------------------------------


def test_bad_input_raises_sync_error_naming_the_stream() -> None:
    sync = Synchronizer(reference(), with_audio(discrete_streams()))
    with pytest.raises(SyncError, match="'sonar'"):
        sync.add("sonar", 0)
    with pytest.raises(SyncError, match="'camera'.*integer"):
        sync.add("camera", 1.5)  # type: ignore[arg-type]
    with pytest.raises(SyncError, match="'audio'.*float32"):
        sync.add("audio", 0, np.zeros((160, 1), dtype=np.int16))
    with pytest.raises(SyncError, match="'audio'.*float32"):
        sync.add("audio", 0, b"raw bytes")
    with pytest.raises(SyncError, match="tick"):
        sync.tick("soon")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("settings_", "streams", "match"),
    [
        (reference(reference="sonar"), discrete_streams(), "'sonar'"),
        (reference(reference="audio"), with_audio(discrete_streams()), "'audio' is continuous"),
        (reference(), [*discrete_streams(), StreamSync("audio", "continuous")], "'audio'.*sample_rate"),
        (reference(audio_window_ns=MS // 3), with_audio(discrete_streams()), "whole number of frames"),
        (reference(), [*discrete_streams(), StreamSync("lidar")], "'lidar' is listed twice"),
        (reference(), [*discrete_streams(), StreamSync("x", sample_rate=10)], "'x': only continuous"),
        (approximate(reference="nope"), discrete_streams(), "'nope'"),
        (reference(queue_size=0), discrete_streams(), "queue_size"),
    ],
)
def test_bad_settings_are_refused(settings_: SyncSettings, streams: list[StreamSync], match: str) -> None:
    with pytest.raises(SyncError, match=match):
        Synchronizer(settings_, streams)


def test_settings_from_the_demo_config() -> None:
    from fusion_pipeline.config import load_config

    sync_settings, streams = settings_from_config(load_config())
    assert sync_settings.mode == "reference" and sync_settings.reference == "lidar/top"
    assert sync_settings.max_wait_ns == 60 * MS and sync_settings.audio_window_ns == 500 * MS
    kinds = {s.name: (s.kind, s.required, s.sample_rate, s.offset_ns) for s in streams}
    assert kinds["audio/roof"] == ("continuous", False, 16000, 0)
    assert kinds["lidar/top"] == ("discrete", True, None, 0)
    Synchronizer(sync_settings, streams)  # accepted as is


@st.composite
def rough_streams(draw: st.DrawFn) -> tuple[list[tuple[str, int]], bool]:
    """Arrivals with dropouts, silences, small steps back, and maybe a log loop (a backward jump
    of about 600 ms, beyond the 300 ms threshold used below). Returns (arrivals, looped)."""
    seed = draw(st.integers(0, 2**32))
    rng = random.Random(seed)
    arrivals = [a for a in demo_arrivals(seed, end_ms=600) if a[0] != "audio"]
    out = []
    for name, t in arrivals:
        if rng.random() < 0.03:
            out.append((name, t - rng.randrange(1, 30) * MS))  # out of order by < 30 ms
        out.append((name, t))
    looped = rng.random() < 0.5
    if looped:
        out += arrivals[: len(arrivals) // 2]
    return out, looped


@settings(max_examples=40, deadline=None)
@given(rough_streams(), st.sampled_from(["reference", "approximate"]), st.integers(1, 6), st.booleans())
def test_every_message_is_emitted_dropped_with_a_reason_or_held(
    case: tuple[list[tuple[str, int]], bool], mode: str, queue_size: int, final_tick: bool
) -> None:
    arrivals, looped = case
    config = SyncSettings(
        mode=mode,  # type: ignore[arg-type]
        reference="lidar",
        queue_size=queue_size,
        max_wait_ns=WAIT,
        max_interval_ns=40 * MS,
        time_jump_ns=300 * MS,
    )
    sync = Synchronizer(config, discrete_streams(camera_required=True))
    sets = [f for name, t in arrivals for f in sync.add(name, t)]
    if final_tick:
        sets += sync.tick(FAR)
    held = sync.depths()
    for name in ("camera", "lidar", "radar"):
        fed = sum(1 for n, _ in arrivals if n == name)
        used = sum(1 for f in sets if name in f.stamps)
        dropped = sum(sync.counters.drops.by_stream[name].values())
        assert used + dropped + held[name] == fed, name
    assert all(f.presence["camera"] and f.presence["lidar"] for f in sets)  # both required
    assert sync.counters.sets_full + sync.counters.sets_partial == len(sets)
    assert sync.counters.time_jumps == int(looped)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["camera", "lidar", "radar", "audio", "sonar", "", "tick"]),
            st.one_of(st.integers(-(2**63), 2**63), st.integers(0, 2 * 10**9), st.floats(), st.none()),
            st.sampled_from(["array", "int16", "bytes", "empty", None]),
        ),
        max_size=40,
    ),
    st.sampled_from(["reference", "approximate"]),
)
def test_untrusted_input_only_ever_raises_sync_error(events: list[tuple], mode: str) -> None:
    payloads = {
        "array": np.zeros((160, 1), dtype=np.float32),
        "int16": np.zeros((160, 1), dtype=np.int16),
        "bytes": b"\x00" * 10,
        "empty": np.zeros((0, 1), dtype=np.float32),
        None: None,
    }
    config = SyncSettings(mode=mode, reference="lidar", max_wait_ns=WAIT)  # type: ignore[arg-type]
    sync = Synchronizer(config, with_audio(discrete_streams()))
    for name, stamp, payload in events:
        try:
            if name == "tick":
                sync.tick(stamp)
            else:
                sync.add(name, stamp, payloads[payload])
        except SyncError:
            pass
    sync.tick(FAR)


@settings(max_examples=40, deadline=None)
@given(rough_streams(), st.sampled_from(["reference", "approximate"]), st.lists(st.integers(0, 200)))
def test_no_deadline_is_overdue_after_an_add_or_a_tick(
    case: tuple[list[tuple[str, int]], bool], mode: str, tick_delays_ms: list[int]
) -> None:
    # A live caller sleeps until next_deadline_ns(): a deadline at or before the watermark would be
    # one it already missed (say, an optional stream that fell silent but still holds sets back).
    arrivals, _ = case
    config = SyncSettings(mode=mode, reference="lidar", max_wait_ns=WAIT, time_jump_ns=300 * MS)  # type: ignore[arg-type]
    sync = Synchronizer(config, discrete_streams())
    delays = iter(tick_delays_ms)
    for name, t in arrivals:
        sync.add(name, t)
        deadline = sync.next_deadline_ns()
        assert deadline is None or deadline > (sync.watermark_ns or 0), (name, t)
        delay = next(delays, None)
        if delay is not None:
            sync.tick(t + delay * MS)  # a live loop's wall clock, up to 200 ms past the stamp
            deadline = sync.next_deadline_ns()
            assert deadline is None or deadline > (sync.watermark_ns or 0), ("tick", t + delay * MS)


def test_an_optional_stream_rejoining_late_never_sends_a_set_back_in_time() -> None:
    """Approximate mode: radar, optional, falls silent, then rejoins with a message older than sets
    already emitted (35 ms of ingest lag). The set it would make goes back in time: it is dropped,
    counted, and the sets stay in stamp order."""
    settings = SyncSettings(mode="approximate", reference="radar", max_wait_ns=60 * MS, queue_size=10)
    streams = [StreamSync("cam"), StreamSync("lidar"), StreamSync("radar", lower_bound_ns=100 * MS)]
    sync: Synchronizer[str] = Synchronizer(settings, streams)
    stamps: list[int] = []

    def add(stream: str, t_ms: int) -> None:
        stamps.extend(s.stamp_ns for s in sync.add(stream, t_ms * MS, stream))

    for stream in ("radar", "cam", "lidar"):
        add(stream, 0)
    for t in range(10, 200, 10):
        add("cam", t)
        add("lidar", t + 5)
    add("radar", 160)  # the watermark is at 195
    for t in range(200, 240, 10):
        add("cam", t)
        add("lidar", t + 5)
    assert stamps == sorted(stamps) and 185 * MS in stamps and 205 * MS in stamps
    assert sync.counters.drops.by_stream["radar"]["too_old"] == 1
