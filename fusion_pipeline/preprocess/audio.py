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

__all__ = ["INT16_SCALE", "AudioParams", "LogMelWindows", "check_audio", "mel_filterbank", "preprocess_audio"]

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
    return _log_mel(_power(_frames(_mono(samples, params), params), params), params)


class LogMelWindows:
    """`preprocess_audio` for the successive windows of one continuous stream, computing only the
    power spectrum rows a window shares with the previous one.

    The synchronizer cuts a window per set, each one reference period after the last: with the demo's
    10 Hz reference, 38 of a window's 48 STFT frames were in the window before. Each window comes with
    the index of its first sample in the stream (`first_sample`); where the two windows' frames fall on
    the same hop grid and the samples they share are the same bits, the shared rows are copied. The
    result is `preprocess_audio`'s, bit for bit: a row's FFT does not depend on the rows beside it
    (tests/unit/preprocess/test_audio_windows.py checks it on the numpy it runs on), and the mel
    product and the log run on the whole window, as there, since a BLAS product's bits depend on its
    shape.
    """

    def __init__(self, params: AudioParams) -> None:
        self.params = params
        self._start = 0  # stream index of the previous window's first sample
        self._x: np.ndarray | None = None  # its mono samples
        self._power: np.ndarray | None = None  # its power rows
        self.rows_reused = 0

    def __call__(self, samples: np.ndarray, first_sample: int) -> np.ndarray:
        x = _mono(samples, self.params)  # PreprocessError, as preprocess_audio
        frames = _frames(x, self.params)
        start = first_sample + len(samples) - self.params.window_samples
        power = self._reuse(x, frames, start)
        # A copy (32 KB): the caller may write into its samples after the call.
        self._start, self._x, self._power = start, x.copy(), power
        return _log_mel(power, self.params)

    def _reuse(self, x: np.ndarray, frames: np.ndarray, start: int) -> np.ndarray:
        """The window's power rows, those it shares with the previous window copied from it."""
        n_rows, hop = frames.shape[0], self.params.hop
        shift, off_grid = divmod(start - self._start, hop)
        if self._x is None or self._power is None or off_grid or abs(shift) >= n_rows:
            return _power(frames, self.params)
        # Row h of this window is row h + shift of the previous one, where that exists; the samples
        # both windows hold must be the same bits (a stream index is a hint, the samples decide).
        kept = slice(max(0, -shift), min(n_rows, n_rows - shift))
        lo, hi = max(start, self._start), min(start, self._start) + len(x)
        ours, theirs = x[lo - start : hi - start], self._x[lo - self._start : hi - self._start]
        if not np.array_equal(ours.view(np.uint32), theirs.view(np.uint32)):
            return _power(frames, self.params)
        power = np.empty_like(self._power)
        power[kept] = self._power[kept.start + shift : kept.stop + shift]
        for new in (slice(0, kept.start), slice(kept.stop, n_rows)):
            if new.start < new.stop:
                power[new] = _power(frames[new], self.params)
        self.rows_reused += kept.stop - kept.start
        return power


def _mono(samples: np.ndarray, params: AudioParams) -> np.ndarray:
    """The checked samples' newest window, float32 mono and contiguous: the samples themselves where
    they already are (no copy)."""
    samples = check_audio(samples, params)  # nothing below raises PreprocessError
    need = params.window_samples
    x = samples[-need:].astype(np.float32, copy=False)  # float32 samples are only read below
    if samples.dtype == np.int16:
        x *= np.float32(INT16_SCALE)
    if x.ndim == 2:
        # One channel is taken as it is: its mean is itself, bit for bit, and costs a reduction pass.
        x = x[:, 0] if x.shape[1] == 1 else x.mean(axis=1)
    return np.ascontiguousarray(x)  # no copy unless a caller passed a strided view


def _frames(x: np.ndarray, params: AudioParams) -> np.ndarray:
    """Mono samples -> (frames, n_fft) rows hop samples apart: a read-only view, made by the ndarray
    constructor (as_strided and sliding_window_view go through Python-level checks that cost more than
    the FFT of a row here)."""
    step = x.itemsize
    frames = np.ndarray((params.shape[-1], params.n_fft), np.float32, x, strides=(params.hop * step, step))
    frames.flags.writeable = False
    return frames


def _power(frames: np.ndarray, params: AudioParams) -> np.ndarray:
    """(rows, n_fft) -> (rows, n_fft // 2 + 1) float32 power spectra of the Hann-windowed rows."""
    return np.abs(np.fft.rfft(frames * _window(params.n_fft), axis=1)) ** 2


def _log_mel(power: np.ndarray, params: AudioParams) -> np.ndarray:
    """(frames, bins) power -> (1, n_mels, frames) float32 ln(mel + floor)."""
    mel = power @ mel_filterbank(params).T  # (48, 40)
    return np.log(mel + np.float32(_LOG_FLOOR)).T[None].astype(np.float32)
