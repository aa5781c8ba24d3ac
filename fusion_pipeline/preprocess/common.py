"""Input checks shared by the per-modality preprocessors."""

from __future__ import annotations

import numpy as np

from fusion_pipeline.preprocess.errors import PreprocessError

__all__ = ["check_array"]


def check_array(
    modality: str,
    name: str,
    array: object,
    ndims: tuple[int, ...],
    dtypes: tuple[str, ...],
    trailing: tuple[int | None, ...] = (),
) -> np.ndarray:
    """Return `array` as an ndarray after checking its rank, dtype and trailing dimensions.

    `trailing` fixes the sizes of the last dimensions (None = any), e.g. (4,) for an Nx4 point cloud.
    """
    if not isinstance(array, np.ndarray):
        raise PreprocessError(modality, f"{name} must be a numpy array, got {type(array).__name__}")
    if array.ndim not in ndims:
        want = " or ".join(f"{n}-D" for n in ndims)
        raise PreprocessError(modality, f"{name} must be {want}, got shape {array.shape}")
    if array.dtype.name not in dtypes:
        raise PreprocessError(
            modality, f"{name} dtype must be one of {', '.join(dtypes)}, got {array.dtype.name}"
        )
    tail = array.shape[array.ndim - len(trailing) :] if trailing else ()
    if any(want is not None and got != want for got, want in zip(tail, trailing, strict=True)):
        shape = "x".join("N" if w is None else str(w) for w in trailing)
        raise PreprocessError(modality, f"{name} must end in ...x{shape}, got shape {array.shape}")
    return array
