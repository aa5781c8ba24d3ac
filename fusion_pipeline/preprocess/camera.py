"""Camera: an rgb8 image of any size -> a normalised float32 tensor of the contract's size and layout.

Resizing is area averaging (or nearest), separable: each output row is a weighted sum of the few input
rows it covers (5 for 480 -> 96), then likewise for columns. That is exact box filtering for any
down-scale factor, integer or not, done as two gathers and two einsums; the tap tables depend only on
the input and output sizes and are cached.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from fusion_pipeline.preprocess.common import Params, check_array
from fusion_pipeline.preprocess.errors import PreprocessError

__all__ = ["RESIZE_METHODS", "CameraParams", "check_camera", "preprocess_camera"]

RESIZE_METHODS = ("area", "nearest")


@dataclass(frozen=True)
class CameraParams(Params):
    MODALITY = "camera"
    FIXED = {"input": "rgb8 HxWx3 uint8"}

    size_hw: tuple[int, ...] = (96, 128)
    resize: str = "area"
    scale: float = 1 / 255
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)  # ImageNet statistics, applied after scaling to [0, 1]
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    layout: str = "CHW"

    def __post_init__(self) -> None:
        if len(self.size_hw) != 2 or min(self.size_hw) < 1:
            raise PreprocessError(
                "camera", f"preprocess.size_hw must be two positive sizes, got {self.size_hw}"
            )
        if self.resize not in RESIZE_METHODS:
            raise PreprocessError("camera", f"preprocess.resize must be one of {RESIZE_METHODS}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise PreprocessError("camera", "preprocess.mean and .std need 3 values (R, G, B), std > 0")
        if self.layout not in ("CHW", "HWC"):
            raise PreprocessError("camera", f"preprocess.layout must be 'CHW' or 'HWC', got {self.layout!r}")

    @property
    def shape(self) -> tuple[int, ...]:
        h, w = self.size_hw
        return (3, h, w) if self.layout == "CHW" else (h, w, 3)


@functools.lru_cache(maxsize=16)
def _taps(n_in: int, n_out: int, method: str) -> tuple[np.ndarray, np.ndarray]:
    """(n_out, K) input indices and weights. Area: output cell i averages input cells
    [i, i + 1) * n_in / n_out; nearest: the one input cell under its centre."""
    if method == "nearest":
        index = ((np.arange(n_out) + 0.5) * (n_in / n_out)).astype(np.int64)[:, None]
        return index, np.ones((n_out, 1), np.float32)
    edges = np.arange(n_out + 1) * (n_in / n_out)
    lo, hi = edges[:-1, None], edges[1:, None]
    j = np.arange(n_in)[None, :]
    overlap = np.clip(np.minimum(hi, j + 1) - np.maximum(lo, j), 0.0, None)
    weights = overlap / overlap.sum(axis=1, keepdims=True)
    taps = int((weights > 0).sum(axis=1).max())
    index = np.argsort(weights <= 0, axis=1, kind="stable")[:, :taps]  # the covered cells, in order
    return index, np.take_along_axis(weights, index, axis=1).astype(np.float32)


@functools.lru_cache(maxsize=16)
def _normalisation(params: CameraParams) -> tuple[np.float32, np.ndarray, np.ndarray]:
    return (
        np.float32(params.scale),
        np.array(params.mean, np.float32)[:, None, None],
        np.array(params.std, np.float32)[:, None, None],
    )


def check_camera(image: np.ndarray, params: CameraParams = CameraParams()) -> np.ndarray:
    """The image, after every check `preprocess_camera` makes (the PreprocessError it would raise)."""
    image = check_array("camera", "image", image, (3,), ("uint8",), trailing=(3,))
    h, w, _ = image.shape
    out_h, out_w = params.size_hw
    if h < out_h or w < out_w:
        raise PreprocessError("camera", f"image {h}x{w} is smaller than the model input {out_h}x{out_w}")
    return image


def preprocess_camera(image: np.ndarray, params: CameraParams = CameraParams()) -> np.ndarray:
    """rgb8 (H, W, 3) uint8 -> float32 of `params.shape` ((3, 96, 128) by default), resized and
    normalised per channel."""
    image = check_camera(image, params)  # nothing below raises PreprocessError
    h, w, _ = image.shape
    out_h, out_w = params.size_hw
    row_index, row_weight = _taps(h, out_h, params.resize)
    col_index, col_weight = _taps(w, out_w, params.resize)
    rows = np.einsum("ok,okwc->owc", row_weight, image[row_index].astype(np.float32))  # (OUT_H, W, 3)
    chw = np.einsum("pk,opkc->cop", col_weight, rows[:, col_index])  # (3, OUT_H, OUT_W)
    scale, mean, std = _normalisation(params)
    out = ((chw * scale - mean) / std).astype(np.float32, copy=False)
    return out if params.layout == "CHW" else np.ascontiguousarray(out.transpose(1, 2, 0))
