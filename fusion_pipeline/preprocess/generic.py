"""Generic: one sample, or a window of samples, of a small-array stream (an IMU, CAN frames) -> float32.

A generic stream carries one sample of a declared shape per message (docs/PROTOCOL.md section 5). The
synchronizer gives each set the sample nearest its stamp (``mode = "nearest"``: the input's shape is the
sample's) or the last `samples` samples up to it, stacked oldest first and padded at the front, with a
mask of the rows that hold one (``mode = "window"``: the input is samples x the sample's shape, its mask
(samples,)). This front end only checks that shape and casts to float32: the values are the model's to
scale, as it was trained on them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fusion_pipeline.preprocess.common import Params
from fusion_pipeline.preprocess.errors import PreprocessError

__all__ = ["GENERIC_MODES", "GenericParams", "check_generic", "preprocess_generic"]

GENERIC_MODES = ("nearest", "window")


@dataclass(frozen=True)
class GenericParams(Params):
    MODALITY = "generic"
    FIXED = {"input": "the stream's samples as they arrive, cast to float32; no scaling"}

    sample_shape: tuple[int, ...] = (1,)
    mode: str = "nearest"
    samples: int = 1  # window: rows of the stacked input; nearest: 1

    def __post_init__(self) -> None:
        if not self.sample_shape or min(self.sample_shape) < 1:
            raise PreprocessError(
                "generic", f"preprocess.sample_shape must be positive sizes, got {self.sample_shape}"
            )
        if self.mode not in GENERIC_MODES:
            raise PreprocessError(
                "generic", f"preprocess.mode must be one of {GENERIC_MODES}, got {self.mode!r}"
            )
        if self.samples < 1 or (self.mode == "nearest" and self.samples != 1):
            raise PreprocessError(
                "generic",
                f"preprocess.samples must be 1 for 'nearest', >= 1 for 'window', got {self.samples}",
            )

    @property
    def shape(self) -> tuple[int, ...]:
        return self.sample_shape if self.mode == "nearest" else (self.samples, *self.sample_shape)


def check_generic(values: np.ndarray, params: GenericParams = GenericParams()) -> np.ndarray:
    """The picked or stacked samples, after every check `preprocess_generic` makes."""
    if not isinstance(values, np.ndarray) or values.dtype.kind not in "biuf":
        raise PreprocessError(
            "generic", f"samples must be a numeric numpy array, got {type(values).__name__}"
        )
    if values.shape != params.shape:
        raise PreprocessError("generic", f"samples must have shape {params.shape}, got {values.shape}")
    return values


def preprocess_generic(values: np.ndarray, params: GenericParams = GenericParams()) -> np.ndarray:
    """The model input: the samples as float32 (a copy only when they are not float32 already)."""
    return check_generic(values, params).astype(np.float32, copy=False)
