"""The camera front end and the JPEG decode as they were before OpenCV (commit 8ebf8b9), numpy and Pillow:
the baselines of tools/bench_preprocess.py and the references the unit tests hold the library paths to
(tests/unit/preprocess/test_preprocess.py: within CAMERA_TOLERANCE; tests/unit/test_ingest.py: the same
pixels). Kept out of the package, which has one implementation of each; the tests import this module
from tools/ as they do the other tools.
"""

from __future__ import annotations

import functools
import io

import numpy as np
from PIL import Image

from fusion_pipeline.preprocess import CameraParams

__all__ = ["CAMERA_TOLERANCE", "camera_separable_taps", "decode_jpeg_pillow"]

#: Largest |OpenCV camera - camera_separable_taps| the tests allow, in normalised units (the model input's
#: own; 1/255/std is 0.017 there, one grey level). Measured: at most 2.1e-6 (docs/BENCHMARKS.md).
CAMERA_TOLERANCE = 1e-5


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


def camera_separable_taps(image: np.ndarray, params: CameraParams) -> np.ndarray:
    """preprocess_camera before OpenCV, checks left out: each output row a weighted sum of the input rows
    it covers, then likewise for columns (two gathers, two einsums), then normalisation."""
    h, w, _ = image.shape
    out_h, out_w = params.size_hw
    row_index, row_weight = _taps(h, out_h, params.resize)
    col_index, col_weight = _taps(w, out_w, params.resize)
    rows = np.einsum("ok,okwc->owc", row_weight, image[row_index].astype(np.float32))  # (OUT_H, W, 3)
    chw = np.einsum("pk,opkc->cop", col_weight, rows[:, col_index])  # (3, OUT_H, OUT_W)
    scale = np.float32(params.scale)
    mean = np.array(params.mean, np.float32)[:, None, None]
    std = np.array(params.std, np.float32)[:, None, None]
    out = ((chw * scale - mean) / std).astype(np.float32, copy=False)
    return out if params.layout == "CHW" else np.ascontiguousarray(out.transpose(1, 2, 0))


def decode_jpeg_pillow(data: np.ndarray) -> np.ndarray:
    """One JPEG file -> (H, W, 3) uint8 RGB, decoded by Pillow as ingest.decode_jpeg did before OpenCV
    (without its size check and error mapping)."""
    with Image.open(io.BytesIO(data.tobytes())) as image:
        return np.asarray(image.convert("RGB"))
