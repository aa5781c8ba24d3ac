"""Continuous streams: windows exact to the sample across chunk boundaries, gaps and tolerated
jitter, at sample rates whose frame period is not a whole number of nanoseconds; bounded memory."""

from __future__ import annotations

import random
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fusion_pipeline.sync import FusedSet, StreamSync, SyncError, Synchronizer, SyncSettings

MS = 1_000_000
NS = 1_000_000_000
WINDOW = 20 * MS
TOLERANCE = MS
FAR = 10**15


def make_sync(rate: int, audio_required: bool = False) -> Synchronizer:
    settings = SyncSettings(
        mode="reference",
        reference="lidar",
        max_wait_ns=30 * MS,
        audio_window_ns=WINDOW,
        audio_gap_tolerance_ns=TOLERANCE,
        queue_size=1000,
    )
    streams = [
        StreamSync("lidar", required=True),
        StreamSync("mic", "continuous", required=audio_required, sample_rate=rate),
    ]
    return Synchronizer(settings, streams)


def chunk(first: int, frames: int) -> np.ndarray:
    """Frames whose values are their global index (exact in float32 below 2**24), 2 channels."""
    values = np.arange(first, first + frames, dtype=np.float32)
    return np.stack([values, -values], axis=1)


GAPS = [
    TOLERANCE // 2,
    -TOLERANCE // 2,
    TOLERANCE,
    TOLERANCE + 1,
    3 * TOLERANCE // 2,
    -3 * TOLERANCE,
    15 * MS,
]


def audio_stream(seed: int) -> tuple[int, list[tuple[int, np.ndarray]], list[int]]:
    """Chunks of 2.5 .. 20 ms; between two, mostly no gap, else a tolerated jitter or a real gap or
    overlap; and reference stamps over the stream's span. Returns (rate, chunks, reference stamps)."""
    rng = random.Random(seed)
    rate = rng.choice([8000, 16000, 44100, 48000])
    start = Fraction(rng.randrange(10 * MS))
    chunks = []
    index = 0
    for _ in range(rng.randint(1, 14)):
        frames = rng.randint(rate // 400, rate // 50)
        stamp = round(start)
        chunks.append((stamp, chunk(index, frames)))
        index += frames
        start = max(
            stamp, stamp + Fraction(frames * NS, rate) + (rng.choice(GAPS) if rng.random() < 0.25 else 0)
        )
    refs = sorted({rng.randrange(-10 * MS, round(start) + 10 * MS) for _ in range(8)})
    return rate, chunks, refs


def frame_table(rate: int, chunks: list[tuple[int, np.ndarray]]) -> list[tuple[Fraction, int, np.ndarray]]:
    """Every frame as (exact time, chunk number, row)."""
    period = Fraction(NS, rate)
    return [
        (stamp + k * period, c, samples[k])
        for c, (stamp, samples) in enumerate(chunks)
        for k in range(len(samples))
    ]


def expected_window(rate: int, frames: list[tuple[Fraction, int, np.ndarray]], t: int) -> np.ndarray | None:
    """Brute force over individual frames: the window * rate frames ending at the last frame (of
    the newest chunk stamped at or before t) at or before t, if t is no more than the tolerance past
    that frame's chunk and every chunk boundary inside the window is within the tolerance."""
    period = Fraction(NS, rate)
    if not any(f[0] <= t for f in frames):
        return None
    newest = max(f[1] for f in frames if f[0] <= t)  # the newest chunk stamped at or before t
    last = max(i for i, f in enumerate(frames) if f[1] == newest and f[0] <= t)
    if t - (frames[last][0] + period) > TOLERANCE:
        return None
    need = WINDOW * rate // NS
    if last + 1 < need:
        return None
    window = frames[last + 1 - need : last + 1]
    for a, b in zip(window, window[1:], strict=False):
        if a[1] != b[1] and abs(b[0] - (a[0] + period)) > TOLERANCE:
            return None
    return np.stack([f[2] for f in window])


def run(sync: Synchronizer, chunks: list[tuple[int, np.ndarray]], refs: list[int]) -> list[FusedSet]:
    arrivals = sorted(
        [(s, 1, "mic", c) for s, c in chunks] + [(t, 0, "lidar", None) for t in refs], key=lambda a: a[:2]
    )
    out: list[FusedSet] = []
    for stamp, _, name, payload in arrivals:
        out += sync.add(name, stamp, payload)
    return out + sync.tick(FAR)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32))
def test_windows_are_exact_to_the_sample(seed: int) -> None:
    rate, chunks, refs = audio_stream(seed)
    sets = run(make_sync(rate), chunks, refs)
    frames = frame_table(rate, chunks)
    assert [f.stamp_ns for f in sets] == refs
    for f in sets:
        window = f.windows["mic"]
        assert (window.start_ns, window.end_ns) == (f.stamp_ns - WINDOW, f.stamp_ns)
        want = expected_window(rate, frames, f.stamp_ns)
        assert f.presence["mic"] is (want is not None)
        if want is None:
            assert window.samples is None
        else:
            assert window.samples is not None and window.samples.dtype == np.float32
            assert window.samples.shape == (WINDOW * rate // NS, 2)
            np.testing.assert_array_equal(window.samples, want)


def test_window_across_boundaries_of_contiguous_chunks() -> None:
    # 16 kHz, 62 500 ns per frame; chunks of 100 frames (6.25 ms). Window 20 ms = 320 frames.
    chunks = [(k * 100 * 62_500, chunk(k * 100, 100)) for k in range(10)]
    t = 40 * MS + 1  # frame 640 is at exactly 40 ms; the last frame at or before t
    (f,) = run(make_sync(16000), chunks, [t])
    np.testing.assert_array_equal(f.windows["mic"].samples[:, 0], np.arange(321, 641, dtype=np.float32))
    (f,) = run(make_sync(16000), chunks, [40 * MS - 1])  # just before frame 640
    np.testing.assert_array_equal(f.windows["mic"].samples[:, 0], np.arange(320, 640, dtype=np.float32))


def test_a_gap_inside_the_window_marks_it_missing_and_later_windows_recover() -> None:
    chunks = [(k * 100 * 62_500, chunk(k * 100, 100)) for k in range(20) if k != 5]  # 31.25..37.5 ms gone
    sets = run(make_sync(16000), chunks, [30 * MS, 40 * MS, 60 * MS])
    assert [f.presence["mic"] for f in sets] == [True, False, True]
    assert sets[1].presence == {"lidar": True, "mic": False}
    np.testing.assert_array_equal(sets[2].windows["mic"].samples[:, 0], np.arange(641, 961, dtype=np.float32))


def test_a_change_of_channels_starts_the_windows_afresh() -> None:
    # 2 channels up to 62.5 ms (frame 1000), then 1 channel, contiguous in time: no window mixes them.
    two = [(k * 100 * 62_500, chunk(k * 100, 100)) for k in range(10)]
    one = [(k * 100 * 62_500, chunk(k * 100, 100)[:, :1].copy()) for k in range(10, 20)]
    sets = run(make_sync(16000), two + one, [40 * MS, 70 * MS, 110 * MS])
    assert [f.presence["mic"] for f in sets] == [True, False, True]
    np.testing.assert_array_equal(sets[0].windows["mic"].samples, chunk(321, 320))
    np.testing.assert_array_equal(sets[2].windows["mic"].samples, chunk(1441, 320)[:, :1])


def test_audio_is_decided_as_soon_as_it_covers_the_stamp() -> None:
    sync = make_sync(16000)
    sync.add("mic", 0, chunk(0, 320))  # 0 .. 20 ms
    assert sync.add("lidar", 25 * MS) == []
    (f,) = sync.add("mic", 20 * MS, chunk(320, 320))  # now covers 25 ms: no need for the deadline
    np.testing.assert_array_equal(
        f.windows["mic"].samples[:, 0], np.arange(81, 401, dtype=np.float32)
    )  # frame 400 is at 25 ms


def test_required_audio_missing_abandons_the_set() -> None:
    sync = make_sync(16000, audio_required=True)
    sets = run(sync, [(0, chunk(0, 160))], [5 * MS, 100 * MS])  # the window never fills
    assert sets == []
    assert sync.counters.sets_missing_required == 2


def test_ring_memory_is_bounded() -> None:
    sync = make_sync(16000)
    for k in range(3000):  # 60 s of 20 ms chunks, and a few reference sweeps
        sync.add("mic", k * 20 * MS, chunk(k * 320, 320))
        if k % 5 == 0:
            sync.add("lidar", k * 20 * MS)
    # window 20 ms + max_wait 30 ms + 2 windows of slack: a handful of 20 ms chunks, not 3000.
    assert sync.depths()["mic"] <= 6
    # A flood of chunks with bogus stamps is capped by frames too (counted as overflow).
    sync = make_sync(16000)
    for k in range(2000):
        sync.add("mic", k, chunk(k * 320, 320))
    assert sync.depths()["mic"] * 320 <= 2 * (320 + 480) + 16000 + 320
    assert sync.counters.drops.by_stream["mic"]["queue_overflow"] > 1900


def test_windows_do_not_alias_the_chunks() -> None:
    samples = chunk(0, 640)
    sync = make_sync(16000)
    sync.add("lidar", 30 * MS)
    (f,) = sync.add("mic", 0, samples)
    f.windows["mic"].samples[:] = -1
    assert samples[0, 0] == 0 and samples[-1, 0] == 639


def test_stream_check_names_the_stream() -> None:
    sync = make_sync(16000)
    with pytest.raises(SyncError, match="'mic'.*no frames"):
        sync.add("mic", 0, np.zeros((0, 2), dtype=np.float32))
    with pytest.raises(SyncError, match="'mic'.*frames x channels"):
        sync.add("mic", 0, np.zeros(320, dtype=np.float32))


def test_a_refused_chunk_changes_nothing() -> None:
    sync = make_sync(16000)
    sync.add("lidar", 100 * MS)
    with pytest.raises(SyncError):
        sync.add("mic", 5000 * MS, np.zeros((4, 2), dtype=np.float64))  # would have moved the watermark
    assert sync.watermark_ns == 100 * MS and sync.depths()["mic"] == 0


def test_approximate_mode_sets_get_the_window_ending_at_their_stamp() -> None:
    settings = SyncSettings(mode="approximate", max_wait_ns=60 * MS, audio_window_ns=WINDOW)
    streams = [StreamSync("camera"), StreamSync("lidar"), StreamSync("mic", "continuous", sample_rate=16000)]
    sync = Synchronizer(settings, streams)
    out: list[FusedSet] = []
    for k in range(10):  # 20 ms chunks; camera and lidar every 40 ms, 3 ms apart
        out += sync.add("mic", k * 20 * MS, chunk(k * 320, 320))
        if k % 2 == 0:
            out += sync.add("camera", k * 20 * MS + 1 * MS) + sync.add("lidar", k * 20 * MS + 4 * MS)
    out += sync.tick(FAR)
    assert [f.stamp_ns for f in out] == [k * 20 * MS + 4 * MS for k in range(0, 10, 2)]
    for f in out:
        last = f.stamp_ns * 16000 // NS  # global index of the last frame at or before the stamp
        if last + 1 >= 320:
            np.testing.assert_array_equal(
                f.windows["mic"].samples[:, 0], np.arange(last - 319, last + 1, dtype=np.float32)
            )
        else:
            assert not f.presence["mic"]
