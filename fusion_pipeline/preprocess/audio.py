"""Audio: the newest 0.5 s of samples -> a 1x40x48 log-mel spectrogram.

Front end (constants from fusion_pipeline.contract): 16 kHz, periodic Hann window of n_fft = 400
(25 ms), hop 160 (10 ms), no centre padding, power spectrum, 40 triangular HTK-mel filters over
0..8 kHz without area normalisation, natural log with a small floor. This matches torch.stft(...,
center=False) followed by torchaudio's melscale_fbanks(norm=None, mel_scale="htk").
"""

from __future__ import annotations

import functools

import numpy as np

from fusion_pipeline.contract import (
    AUDIO_HOP,
    AUDIO_N_FFT,
    AUDIO_N_MELS,
    AUDIO_SAMPLE_RATE,
    AUDIO_WINDOW_S,
)
from fusion_pipeline.preprocess.common import check_array
from fusion_pipeline.preprocess.errors import PreprocessError

__all__ = ["PARAMS", "WINDOW_SAMPLES", "mel_filterbank", "preprocess_audio"]

WINDOW_SAMPLES = int(AUDIO_SAMPLE_RATE * AUDIO_WINDOW_S)

PARAMS: dict[str, object] = {
    "input": "samples int16 or float32, frames or frames x channels (channels averaged)",
    "sample_rate": AUDIO_SAMPLE_RATE,
    "window_s": AUDIO_WINDOW_S,
    "n_fft": AUDIO_N_FFT,
    "hop": AUDIO_HOP,
    "window": "hann, periodic",
    "center": False,
    "power": 2.0,
    "n_mels": AUDIO_N_MELS,
    "f_min_hz": 0.0,
    "f_max_hz": AUDIO_SAMPLE_RATE / 2,
    "mel_scale": "htk",
    "log": "ln(mel + 1e-6)",
    "int16_scale": 1 / 32768,
}
_LOG_FLOOR = 1e-6


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + f / 700.0)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


@functools.lru_cache(maxsize=1)
def mel_filterbank() -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) triangular filters, peaks evenly spaced on the HTK mel scale."""
    bins_hz = np.linspace(0.0, AUDIO_SAMPLE_RATE / 2, AUDIO_N_FFT // 2 + 1)
    mels = np.linspace(
        _hz_to_mel(np.float64(PARAMS["f_min_hz"])),
        _hz_to_mel(np.float64(PARAMS["f_max_hz"])),
        AUDIO_N_MELS + 2,
    )
    edges = _mel_to_hz(mels)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins_hz - lower) / (centre - lower)
    falling = (upper - bins_hz) / (upper - centre)
    return np.maximum(0.0, np.minimum(rising, falling)).astype(np.float32)


@functools.lru_cache(maxsize=1)
def _window() -> np.ndarray:
    n = np.arange(AUDIO_N_FFT)
    return (0.5 - 0.5 * np.cos(2 * np.pi * n / AUDIO_N_FFT)).astype(np.float32)


def preprocess_audio(samples: np.ndarray) -> np.ndarray:
    """The newest WINDOW_SAMPLES (8000) samples -> (1, 40, 48) float32 log-mel; older samples are ignored."""
    samples = check_array("audio", "samples", samples, (1, 2), ("int16", "float32", "float64"))
    if len(samples) < WINDOW_SAMPLES:
        raise PreprocessError(
            "audio", f"need at least {WINDOW_SAMPLES} samples ({AUDIO_WINDOW_S} s), got shape {samples.shape}"
        )
    x = samples[-WINDOW_SAMPLES:].astype(np.float32)
    if samples.dtype == np.int16:
        x *= np.float32(PARAMS["int16_scale"])
    if x.ndim == 2:
        x = x.mean(axis=1)
    frames = np.lib.stride_tricks.sliding_window_view(x, AUDIO_N_FFT)[::AUDIO_HOP]  # (48, 400), no copy
    power = np.abs(np.fft.rfft(frames * _window(), axis=1)) ** 2  # (48, 201)
    mel = power.astype(np.float32) @ mel_filterbank().T  # (48, 40)
    return np.log(mel + np.float32(_LOG_FLOOR)).T[None].astype(np.float32)  # (1, n_mels, frames)
