"""Radar: Mx5 detections (x, y, z, radial velocity, rcs) -> a fixed 64x5 set plus a 64 mask.

Detections are ordered by range (nearest first, stable on ties) so the result never depends on the
order a driver happens to list them in beyond exact ties; when there are more than 64, the nearest 64
are kept. Features are divided by fixed scales so they are all of order one.
"""

from __future__ import annotations

import numpy as np

from fusion_pipeline.contract import default_contract
from fusion_pipeline.preprocess.common import check_array

__all__ = ["PARAMS", "preprocess_radar"]

_SLOTS, _FEATURES = default_contract().input("radar").shape

PARAMS: dict[str, object] = {
    "input": "detections Mx5 float32 x,y,z (m), radial velocity (m/s), rcs (dBsm), sensor frame",
    "order": "range ascending, stable; nearest kept when M > slots",
    "slots": _SLOTS,
    "scale": [50.0, 50.0, 5.0, 20.0, 20.0],
}
_SCALE = np.array(PARAMS["scale"], np.float32)


def preprocess_radar(detections: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(M, 5) detections -> ((64, 5) float32 scaled and zero padded, (64,) float32 mask of real rows)."""
    detections = check_array(
        "radar", "detections", detections, (2,), ("float32", "float64"), trailing=(_FEATURES,)
    )
    detections = detections[np.isfinite(detections).all(axis=1)]
    rng = np.linalg.norm(detections[:, :3], axis=1)
    keep = np.argsort(rng, kind="stable")[:_SLOTS]
    out = np.zeros((_SLOTS, _FEATURES), np.float32)
    out[: len(keep)] = detections[keep] / _SCALE
    mask = np.zeros(_SLOTS, np.float32)
    mask[: len(keep)] = 1.0
    return out, mask
