"""Radar: Mx5 detections (x, y, z, radial velocity, rcs) -> a fixed slots x 5 set plus a slots mask.

Detections are ordered by range (nearest first, stable on ties) so the result never depends on the
order a driver happens to list them in beyond exact ties; when there are more than `slots`, the nearest
are kept. Features are divided by fixed scales so they are all of order one.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from fusion_pipeline.preprocess.common import Params, check_array
from fusion_pipeline.preprocess.errors import PreprocessError

__all__ = ["RADAR_FEATURES", "RadarParams", "check_radar", "preprocess_radar"]

RADAR_FEATURES = 5


@dataclass(frozen=True)
class RadarParams(Params):
    MODALITY = "radar"
    FIXED = {
        "input": "detections Mx5 float32 x,y,z (m), radial velocity (m/s), rcs (dBsm), sensor frame",
        "order": "range ascending, stable; nearest kept when M > slots",
    }

    slots: int = 64
    scale: tuple[float, ...] = (50.0, 50.0, 5.0, 20.0, 20.0)

    def __post_init__(self) -> None:
        if self.slots < 1:
            raise PreprocessError("radar", f"preprocess.slots must be positive, got {self.slots}")
        if len(self.scale) != RADAR_FEATURES or min(self.scale) <= 0:
            raise PreprocessError("radar", f"preprocess.scale needs {RADAR_FEATURES} positive values")

    @property
    def shape(self) -> tuple[int, ...]:
        return self.slots, RADAR_FEATURES


@functools.lru_cache(maxsize=16)
def _scale(params: RadarParams) -> np.ndarray:
    return np.array(params.scale, np.float32)


def check_radar(detections: np.ndarray, params: RadarParams = RadarParams()) -> np.ndarray:
    """The detections, after every check `preprocess_radar` makes (the PreprocessError it would raise).
    `params` is unused: every modality's check takes its parameters, so a front end calls any alike."""
    return check_array(
        "radar", "detections", detections, (2,), ("float32", "float64"), trailing=(RADAR_FEATURES,)
    )


def preprocess_radar(
    detections: np.ndarray, params: RadarParams = RadarParams()
) -> tuple[np.ndarray, np.ndarray]:
    """(M, 5) detections -> ((slots, 5) float32, scaled and zero padded; (slots,) float32, 1 = a real row)."""
    detections = check_radar(detections, params)  # nothing below raises PreprocessError
    detections = detections[np.isfinite(detections).all(axis=1)]
    rng = np.linalg.norm(detections[:, :3], axis=1)
    keep = np.argsort(rng, kind="stable")[: params.slots]
    out = np.zeros(params.shape, np.float32)
    out[: len(keep)] = detections[keep] / _scale(params)
    mask = np.zeros(params.slots, np.float32)
    mask[: len(keep)] = 1.0
    return out, mask
