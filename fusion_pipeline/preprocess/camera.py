"""Camera: an rgb8 image of any size -> a normalised float32 tensor of the contract's size and layout.

Area resizing is OpenCV's INTER_AREA on the image as float32: exact box filtering for any down-scale
factor, integer or not, each output cell the mean of the input cells it covers (partly covered ones by
their covered fraction). It runs in float32, not on the uint8 image, so no rounding to whole grey levels
happens before normalisation. Nearest takes the input cell under each output cell's centre, a gather
of the uint8 image. Normalisation then runs per channel on the small result.

OpenCV runs single-threaded here (cv2.setNumThreads(1), process-wide, set on import): a frame this small
gains nothing from a thread pool (tools/bench_preprocess.py), and the pool's threads would compete for
the cores the other streams' nodes run on.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

from fusion_pipeline.preprocess.common import Params, check_array
from fusion_pipeline.preprocess.errors import PreprocessError

__all__ = ["RESIZE_METHODS", "CameraParams", "check_camera", "preprocess_camera"]

RESIZE_METHODS = ("area", "nearest")

cv2.setNumThreads(1)


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
def _nearest_index(n_in: int, n_out: int) -> np.ndarray:
    """The input cell under each output cell's centre. (cv2's INTER_NEAREST takes the cell under the
    output cell's corner, and INTER_NEAREST_EXACT rounds some centres the other way.)"""
    return ((np.arange(n_out) + 0.5) * (n_in / n_out)).astype(np.int64)


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
    if params.resize == "area":
        resized = cv2.resize(
            image.astype(np.float32, order="C"), (out_w, out_h), interpolation=cv2.INTER_AREA
        )
    else:
        resized = image[_nearest_index(h, out_h)][:, _nearest_index(w, out_w)]
    # Channels first before the arithmetic: numpy broadcasts fast along long rows, slowly along 3.
    chw = resized.transpose(2, 0, 1).astype(np.float32, order="C")
    scale, mean, std = _normalisation(params)
    out = (chw * scale - mean) / std
    return out if params.layout == "CHW" else np.ascontiguousarray(out.transpose(1, 2, 0))
