"""Lidar: an Nx4 point cloud (x, y, z, intensity; sensor frame) -> a bird's-eye-view grid.

With the default parameters the grid is 3x64x64: row r covers x in [r, r + 1) m ahead, column c covers y
in [c - 32, c - 31) m (column 0 = 32 m to the right). Channels, in the order `channels` names them:
occupancy log(1 + n) / log(1 + saturation) clipped to 1; the highest point's height above z_min as a
fraction of the z range; the mean intensity. Points outside the box and points with any non-finite value
are ignored (the pipeline's ingest refuses a message holding one, PROTOCOL.md section 5; a dataset or an
offline caller may pass them); every reduction is a bincount or ufunc.at over cell ids.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fusion_pipeline.preprocess.common import Params, check_array
from fusion_pipeline.preprocess.errors import PreprocessError

__all__ = ["LIDAR_CHANNELS", "LidarParams", "check_lidar", "preprocess_lidar"]

LIDAR_CHANNELS = ("occupancy", "max_height", "mean_intensity")


@dataclass(frozen=True)
class LidarParams(Params):
    MODALITY = "lidar"
    FIXED = {"input": "points Nx4 float32 x,y,z,intensity, sensor frame, m"}

    x_range_m: tuple[float, ...] = (0.0, 64.0)
    y_range_m: tuple[float, ...] = (-32.0, 32.0)
    z_range_m: tuple[float, ...] = (-2.5, 1.5)  # lidar mounted 1.8 m up: ground is at z = -1.8
    cell_m: float = 1.0
    occupancy_saturation: float = 16.0
    channels: tuple[str, ...] = LIDAR_CHANNELS

    def __post_init__(self) -> None:
        for key in ("x_range_m", "y_range_m", "z_range_m"):
            lo_hi = getattr(self, key)
            if len(lo_hi) != 2 or not lo_hi[0] < lo_hi[1]:
                raise PreprocessError("lidar", f"preprocess.{key} must be [min, max] with min < max")
        if self.cell_m <= 0 or self.occupancy_saturation <= 0:
            raise PreprocessError("lidar", "preprocess.cell_m and .occupancy_saturation must be positive")
        for key, (lo, hi) in (("x_range_m", self.x_range_m), ("y_range_m", self.y_range_m)):
            cells = (hi - lo) / self.cell_m
            if abs(cells - round(cells)) > 1e-9:
                raise PreprocessError(
                    "lidar", f"preprocess.{key}: {hi - lo} m is not a whole number of cells"
                )
        unknown = sorted(set(self.channels) - set(LIDAR_CHANNELS))
        if unknown or len(set(self.channels)) != len(self.channels):
            raise PreprocessError("lidar", f"preprocess.channels: distinct names from {LIDAR_CHANNELS}")

    @property
    def shape(self) -> tuple[int, ...]:
        (x0, x1), (y0, y1) = self.x_range_m, self.y_range_m
        return len(self.channels), round((x1 - x0) / self.cell_m), round((y1 - y0) / self.cell_m)


def check_lidar(points: np.ndarray, params: LidarParams = LidarParams()) -> np.ndarray:
    """The points, after every check `preprocess_lidar` makes (the PreprocessError it would raise).
    `params` is unused: every modality's check takes its parameters, so a front end calls any alike."""
    return check_array("lidar", "points", points, (2,), ("float32", "float64"), trailing=(4,))


def preprocess_lidar(points: np.ndarray, params: LidarParams = LidarParams()) -> np.ndarray:
    """(N, 4) float32/float64 points -> float32 BEV of `params.shape` ((3, 64, 64) by default)."""
    points = check_lidar(points, params)  # nothing below raises PreprocessError
    (x0, x1), (y0, y1), (z0, z1) = params.x_range_m, params.y_range_m, params.z_range_m
    n_channels, rows, cols = params.shape
    # One transposing copy makes each column contiguous: the comparisons and gathers below then run
    # vectorized instead of striding over Nx4 rows (about 20 % of the whole, tools/bench_preprocess.py).
    x, y, z, intensity = np.ascontiguousarray(points.T)
    with np.errstate(invalid="ignore"):  # NaN compares False: no-return points drop out here
        in_box = (x >= x0) & (x < x1) & (y >= y0) & (y < y1) & (z >= z0) & (z <= z1)
        inside = np.flatnonzero(in_box & np.isfinite(intensity))
    x, y, z, intensity = x[inside], y[inside], z[inside], intensity[inside]
    row = ((x - x0) / params.cell_m).astype(np.int64)
    col = ((y - y0) / params.cell_m).astype(np.int64)
    cell = np.minimum(row, rows - 1) * cols + np.minimum(col, cols - 1)  # guards float rounding at the edge
    n_cells = rows * cols
    count = np.bincount(cell, minlength=n_cells).astype(np.float32)
    height = np.zeros(n_cells, np.float32)  # empty cells stay 0; heights are >= 0 after the shift
    np.maximum.at(height, cell, ((z - z0) / (z1 - z0)).astype(np.float32))
    intensity_sum = np.bincount(cell, weights=intensity, minlength=n_cells)
    channel = {
        "occupancy": lambda: np.minimum(np.log1p(count) / np.log1p(params.occupancy_saturation), 1.0),
        "max_height": lambda: height,
        "mean_intensity": lambda: intensity_sum / np.maximum(count, 1.0),
    }
    bev = np.stack([channel[name]() for name in params.channels])
    return bev.reshape(n_channels, rows, cols).astype(np.float32)
