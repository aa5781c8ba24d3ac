"""Audio: the newest window of samples -> a 1 x n_mels x frames log-mel spectrogram.

Default front end: 0.5 s at 16 kHz, periodic Hann window of n_fft = 400 (25 ms), hop 160 (10 ms), no
centre padding, power spectrum, 40 triangular HTK-mel filters over 0..8 kHz without area normalisation,
natural log with a small floor: 1x40x48. This matches torch.stft(..., center=False) followed by
torchaudio's melscale_fbanks(norm=None, mel_scale="htk").
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from fusion_pipeline.preprocess.common import Params, check_array
from fusion_pipeline.preprocess.errors import PreprocessError

__all__ = ["INT16_SCALE", "AudioParams", "check_audio", "mel_filterbank", "preprocess_audio"]

_LOG_FLOOR = 1e-6
#: PCM S16 full scale: int16 samples become float32 in [-1, 1) (here and in ingest, the same factor).
INT16_SCALE = 1 / 32768


@dataclass(frozen=True)
class AudioParams(Params):
    MODALITY = "audio"
    FIXED = {
        "input": "samples int16 or float32, frames or frames x channels (channels averaged)",
        "window": "hann, periodic",
        "center": False,
        "power": 2.0,
        "mel_scale": "htk",
        "log": "ln(mel + 1e-6)",
        "int16_scale": INT16_SCALE,
    }

    sample_rate: int = 16_000
    window_s: float = 0.5
    n_fft: int = 400
    hop: int = 160
    n_mels: int = 40
    f_min_hz: float = 0.0
    f_max_hz: float = 8000.0

    def __post_init__(self) -> None:
        if min(self.sample_rate, self.n_fft, self.hop, self.n_mels) < 1:
            raise PreprocessError("audio", "preprocess.sample_rate, n_fft, hop and n_mels must be positive")
        if self.window_samples < self.n_fft:
            raise PreprocessError(
                "audio", f"preprocess.window_s = {self.window_s}: fewer samples than n_fft = {self.n_fft}"
            )
        if not 0 <= self.f_min_hz < self.f_max_hz <= self.sample_rate / 2:
            raise PreprocessError("audio", "preprocess: need 0 <= f_min_hz < f_max_hz <= sample_rate / 2")

    @property
    def window_samples(self) -> int:
        """How many samples one model input covers."""
        return int(self.sample_rate * self.window_s)

    @property
    def shape(self) -> tuple[int, ...]:
        return 1, self.n_mels, 1 + (self.window_samples - self.n_fft) // self.hop


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + f / 700.0)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


@functools.lru_cache(maxsize=8)
def mel_filterbank(params: AudioParams = AudioParams()) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) triangular filters, peaks evenly spaced on the HTK mel scale."""
    bins_hz = np.linspace(0.0, params.sample_rate / 2, params.n_fft // 2 + 1)
    mels = np.linspace(
        _hz_to_mel(np.float64(params.f_min_hz)), _hz_to_mel(np.float64(params.f_max_hz)), params.n_mels + 2
    )
    edges = _mel_to_hz(mels)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins_hz - lower) / (centre - lower)
    falling = (upper - bins_hz) / (upper - centre)
    return np.maximum(0.0, np.minimum(rising, falling)).astype(np.float32)


@functools.lru_cache(maxsize=8)
def _window(n_fft: int) -> np.ndarray:
    n = np.arange(n_fft)
    return (0.5 - 0.5 * np.cos(2 * np.pi * n / n_fft)).astype(np.float32)


def check_audio(samples: np.ndarray, params: AudioParams = AudioParams()) -> np.ndarray:
    """The samples, after every check `preprocess_audio` makes (the PreprocessError it would raise)."""
    samples = check_array("audio", "samples", samples, (1, 2), ("int16", "float32", "float64"))
    if len(samples) < params.window_samples:
        raise PreprocessError(
            "audio",
            f"need at least {params.window_samples} samples ({params.window_s} s), got shape {samples.shape}",
        )
    return samples


def preprocess_audio(samples: np.ndarray, params: AudioParams = AudioParams()) -> np.ndarray:
    """The newest `params.window_samples` (8000) samples -> float32 log-mel of `params.shape`
    ((1, 40, 48) by default); older samples are ignored."""
    samples = check_audio(samples, params)  # nothing below raises PreprocessError
    need = params.window_samples
    x = samples[-need:].astype(np.float32)
    if samples.dtype == np.int16:
        x *= np.float32(INT16_SCALE)
    if x.ndim == 2:
        # One channel is taken as it is: its mean is itself, bit for bit, and costs a reduction pass.
        x = x[:, 0] if x.shape[1] == 1 else x.mean(axis=1)
    # (48, 400) rows hop samples apart, a view (no copy); as_strided directly, as sliding_window_view's
    # checks and slicing cost more than the FFT of a row here.
    n_frames = params.shape[-1]
    step = x.strides[0]
    frames = np.lib.stride_tricks.as_strided(
        x, (n_frames, params.n_fft), (params.hop * step, step), writeable=False
    )
    power = np.abs(np.fft.rfft(frames * _window(params.n_fft), axis=1)) ** 2  # (48, 201) float32
    mel = power @ mel_filterbank(params).T  # (48, 40)
    return np.log(mel + np.float32(_LOG_FLOOR)).T[None].astype(np.float32)  # (1, n_mels, frames)
