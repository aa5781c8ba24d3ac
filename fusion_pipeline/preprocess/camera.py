"""Camera: an rgb8 image of any size -> a normalised CHW float32 tensor of the contract's size.

Resizing is area averaging, separable: each output row is a weighted sum of the few input rows it
covers (5 for 480 -> 96), then likewise for columns. That is exact box filtering for any down-scale
factor, integer or not, done as two gathers and two einsums; the tap tables depend only on the input
and output sizes and are cached.
"""

from __future__ import annotations

import functools

import numpy as np

from fusion_pipeline.contract import default_contract
from fusion_pipeline.preprocess.common import check_array
from fusion_pipeline.preprocess.errors import PreprocessError

__all__ = ["PARAMS", "preprocess_camera"]

_OUT_C, _OUT_H, _OUT_W = default_contract().input("camera").shape

PARAMS: dict[str, object] = {
    "input": "rgb8 HxWx3 uint8",
    "resize": "area",
    "size_hw": [_OUT_H, _OUT_W],
    "scale": 1 / 255,
    "mean": [0.485, 0.456, 0.406],  # ImageNet statistics, applied after scaling to [0, 1]
    "std": [0.229, 0.224, 0.225],
    "layout": "CHW",
}
_MEAN = np.array(PARAMS["mean"], np.float32)[:, None, None]
_STD = np.array(PARAMS["std"], np.float32)[:, None, None]


@functools.lru_cache(maxsize=16)
def _area_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """(n_out, K) input indices and weights; output cell i averages input cells [i, i + 1) * n_in / n_out."""
    edges = np.arange(n_out + 1) * (n_in / n_out)
    lo, hi = edges[:-1, None], edges[1:, None]
    j = np.arange(n_in)[None, :]
    overlap = np.clip(np.minimum(hi, j + 1) - np.maximum(lo, j), 0.0, None)
    weights = overlap / overlap.sum(axis=1, keepdims=True)
    taps = int((weights > 0).sum(axis=1).max())
    index = np.argsort(weights <= 0, axis=1, kind="stable")[:, :taps]  # the covered cells, in order
    return index, np.take_along_axis(weights, index, axis=1).astype(np.float32)


def preprocess_camera(image: np.ndarray) -> np.ndarray:
    """rgb8 (H, W, 3) uint8 -> (3, 96, 128) float32, area-resized and normalised per channel."""
    image = check_array("camera", "image", image, (3,), ("uint8",), trailing=(3,))
    h, w, _ = image.shape
    if h < _OUT_H or w < _OUT_W:
        raise PreprocessError("camera", f"image {h}x{w} is smaller than the model input {_OUT_H}x{_OUT_W}")
    row_index, row_weight = _area_taps(h, _OUT_H)
    col_index, col_weight = _area_taps(w, _OUT_W)
    rows = np.einsum("ok,okwc->owc", row_weight, image[row_index].astype(np.float32))  # (OUT_H, W, 3)
    chw = np.einsum("pk,opkc->cop", col_weight, rows[:, col_index])  # (3, OUT_H, OUT_W)
    return ((chw * np.float32(PARAMS["scale"]) - _MEAN) / _STD).astype(np.float32, copy=False)
