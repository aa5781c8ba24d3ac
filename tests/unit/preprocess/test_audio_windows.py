"""LogMelWindows: successive windows of one stream give preprocess_audio's log-mel bit for bit, computing
only the power rows the previous window did not hold."""

from __future__ import annotations

import numpy as np
import pytest

from fusion_pipeline.preprocess import AudioParams, LogMelWindows, PreprocessError, preprocess_audio

PARAMS = AudioParams()  # 8000 samples, hop 160, 48 frames
N = PARAMS.window_samples
HOP = PARAMS.hop


def stream(channels: int, seconds: float = 3.0) -> np.ndarray:
    rng = np.random.default_rng(channels)
    n = int(PARAMS.sample_rate * seconds)
    tone = np.sin(2 * np.pi * 440 * np.arange(n) / PARAMS.sample_rate)[:, None]
    return (0.1 * tone + 0.05 * rng.standard_normal((n, channels))).astype(np.float32)


@pytest.mark.parametrize("channels", [1, 2])
def test_each_window_is_preprocess_audios_bit_for_bit(channels: int) -> None:
    signal = stream(channels)
    windows = LogMelWindows(PARAMS)
    # (first sample, rows the previous window shares on the same hop grid)
    steps = [
        (0, 0),  # the first window: nothing to share
        (10 * HOP, 38),  # one 10 Hz reference period later, as in the demo
        (20 * HOP, 38),
        (20 * HOP, 48),  # the same window again
        (15 * HOP, 43),  # back by 5 hops
        (15 * HOP + 7, 0),  # off the hop grid
        (15 * HOP + 7 + 47 * HOP, 1),  # one row in common
        (15 * HOP + 7 + 95 * HOP, 0),  # past the previous window altogether
    ]
    for first, shared in steps:
        before = windows.rows_reused
        cut = signal[first : first + N]
        got = windows(cut, first)
        want = preprocess_audio(cut, PARAMS)
        assert got.shape == want.shape == PARAMS.shape and got.dtype == np.float32
        assert got.tobytes() == want.tobytes(), f"window at {first}"
        assert windows.rows_reused - before == shared, f"window at {first}"


def test_a_longer_cut_counts_from_its_newest_samples() -> None:
    signal = stream(1)
    windows = LogMelWindows(PARAMS)
    windows(signal[:N], 0)
    longer = signal[10 * HOP - 300 : 10 * HOP + N]  # 300 older samples that the front end ignores
    got = windows(longer, 10 * HOP - 300)
    assert windows.rows_reused == 38
    assert got.tobytes() == preprocess_audio(longer, PARAMS).tobytes()


def test_a_refused_window_changes_nothing() -> None:
    signal = stream(1)
    windows = LogMelWindows(PARAMS)
    windows(signal[:N], 0)
    with pytest.raises(PreprocessError, match="8000 samples"):
        windows(signal[10 * HOP : 10 * HOP + N - 1], 10 * HOP)
    got = windows(signal[10 * HOP : 10 * HOP + N], 10 * HOP)
    assert windows.rows_reused == 38
    assert got.tobytes() == preprocess_audio(signal[10 * HOP : 10 * HOP + N], PARAMS).tobytes()


def test_samples_decide_not_the_index() -> None:
    # Another stream's window under the same index (a caller's mistake): its rows are its own.
    windows = LogMelWindows(PARAMS)
    windows(stream(1)[:N], 0)
    other = stream(2)[10 * HOP : 10 * HOP + N]
    got = windows(other, 10 * HOP)
    assert windows.rows_reused == 0
    assert got.tobytes() == preprocess_audio(other, PARAMS).tobytes()


def test_samples_written_over_after_the_call_are_not_trusted() -> None:
    signal = stream(1)
    windows = LogMelWindows(PARAMS)
    buffer = signal[:N].copy()
    windows(buffer, 0)
    buffer[:] = 0.0  # the caller reuses its buffer: the next window is silence
    silence = np.zeros((N, 1), np.float32)
    got = windows(silence, 10 * HOP)
    assert windows.rows_reused == 0
    assert got.tobytes() == preprocess_audio(silence, PARAMS).tobytes()
