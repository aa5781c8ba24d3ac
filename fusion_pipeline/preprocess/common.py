"""What the per-modality preprocessors share: input checks and the parameters base class."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar

import numpy as np

from fusion_pipeline.preprocess.errors import PreprocessError

__all__ = ["Params", "check_array"]

P = TypeVar("P", bound="Params")


@functools.lru_cache(maxsize=64)
def _dtype_name(dtype: np.dtype) -> str:
    """`dtype.name`, cached: numpy builds that string anew in Python at each access (a few µs, more
    with cold caches, on the path of every frame)."""
    return dtype.name


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
    if _dtype_name(array.dtype) not in dtypes:
        raise PreprocessError(
            modality, f"{name} dtype must be one of {', '.join(dtypes)}, got {array.dtype.name}"
        )
    tail = array.shape[array.ndim - len(trailing) :] if trailing else ()
    if any(want is not None and got != want for got, want in zip(tail, trailing, strict=True)):
        shape = "x".join("N" if w is None else str(w) for w in trailing)
        raise PreprocessError(modality, f"{name} must end in ...x{shape}, got shape {array.shape}")
    return array


@dataclasses.dataclass(frozen=True)
class Params:
    """One modality's preprocessing parameters: the ``preprocess`` dict of a contract input, typed.

    Subclasses are frozen dataclasses whose defaults are the shipped model's front end; they are
    hashable, so the tables built from them (resize taps, mel filters) are cached per parameter set.
    FIXED holds the keys the pipeline implements one way only: the dict states them so a model says what
    it was trained with, and a model that wants another value is refused rather than fed other features.
    """

    MODALITY: ClassVar[str]
    FIXED: ClassVar[Mapping[str, object]]

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of the model input these parameters produce (no batch dimension)."""
        raise NotImplementedError

    def to_dict(self) -> dict[str, object]:
        """The contract's JSON form: FIXED keys first, tuples as lists."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {**self.FIXED, **{k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}}

    @classmethod
    def from_dict(cls: type[P], raw: Mapping[str, Any]) -> P:
        """Parse a contract's ``preprocess`` dict; a missing key takes the default, an unknown key or a
        value of the wrong type is refused with its name."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        for key, value in raw.items():
            if key in cls.FIXED:
                if value != cls.FIXED[key]:
                    raise PreprocessError(
                        cls.MODALITY,
                        f"preprocess.{key} = {value!r}: the pipeline implements only {cls.FIXED[key]!r}",
                    )
            elif key in fields:
                values[key] = _typed(cls.MODALITY, key, value, fields[key].default)
            else:
                known = ", ".join([*cls.FIXED, *fields])
                raise PreprocessError(cls.MODALITY, f"preprocess.{key}: unknown parameter (known: {known})")
        return cls(**values)


def _typed(modality: str, key: str, value: object, default: object) -> object:
    """`value` as the type of `default` (a tuple as a tuple of its element type); ints pass as floats."""
    if isinstance(default, tuple):
        if not isinstance(value, list | tuple) or len(value) == 0:
            raise PreprocessError(modality, f"preprocess.{key} must be a list, got {value!r}")
        return tuple(_typed(modality, key, v, default[0]) for v in value)
    kind = type(default)
    ok = isinstance(value, kind) or (kind is float and isinstance(value, int))
    if not ok or isinstance(value, bool) != isinstance(default, bool):
        raise PreprocessError(modality, f"preprocess.{key} must be a {kind.__name__}, got {value!r}")
    return kind(value)
