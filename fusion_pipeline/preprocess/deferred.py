"""Deferred front ends: a payload's checks at once, its arithmetic only when a set takes it.

Ingest runs a stream's front end as each frame arrives, and the synchronizer then drops most frames of a
fast discrete stream (two thirds of the demo's camera frames are superseded by a nearer one). Computing
their tensors at once is wasted work offline, and in one loop that serves every stream (the composed
node) it holds up the frames behind. `DeferredFrontEnd` runs the front end's checks at once, so it
refuses exactly the payloads the front end refuses, and returns `Deferred` tensors, each with the dtype
and shape the sync stage checks; the arithmetic runs at the first `compute()`, so a frame no set takes
never pays for it. `resolve` gives a set message's arrays computed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Protocol, TypeVar

import numpy as np

from fusion_pipeline.preprocess import InputPreprocessor

__all__ = ["DEFERRED_MODALITIES", "Deferred", "DeferredFrontEnd", "defer", "resolve"]

#: Modalities whose front end ingest runs per frame and the synchronizer may drop afterwards. Audio's
#: front end runs in the synchronizer on the window it cuts; a generic stream's is a copy.
DEFERRED_MODALITIES = ("camera", "lidar", "radar")


class _Bound(Protocol):
    """What `defer` needs of a binding (fusion_pipeline.binding.Binding, a dataclass)."""

    input: Any  # its InputSpec (contract.py): modality, tensors
    prepare: InputPreprocessor


_B = TypeVar("_B", bound=_Bound)


def defer(binding: _B) -> _B:
    """`binding` with its front end deferred (module docstring), if its modality is one to defer."""
    if binding.input.modality not in DEFERRED_MODALITIES:
        return binding
    front_end = DeferredFrontEnd(binding.prepare, binding.input.tensors)
    return dataclasses.replace(binding, prepare=front_end)  # type: ignore[type-var]


class DeferredFrontEnd:
    """A front end as ingest calls it, deferred: the checks now, the tensors on `compute()`."""

    def __init__(self, front_end: InputPreprocessor, tensors: Mapping[str, tuple[int, ...]]) -> None:
        self.front_end = front_end
        # What the front end returns for a payload its checks pass: preprocessor_for checked its shapes.
        self.tensors = dict(tensors)

    def __call__(self, payload: np.ndarray) -> dict[str, Deferred]:
        self.front_end.check(payload)  # PreprocessError: refused now, as the front end itself refuses it
        frame = _Frame(self.front_end, payload)
        return {name: Deferred(frame, name, shape) for name, shape in self.tensors.items()}


class _Frame:
    """One payload's front-end call, run once for all the tensors it returns."""

    def __init__(self, front_end: InputPreprocessor, payload: np.ndarray) -> None:
        self.front_end, self.payload = front_end, payload
        self.tensors: dict[str, np.ndarray] | None = None

    def tensor(self, name: str) -> np.ndarray:
        if self.tensors is None:
            self.tensors = self.front_end(self.payload)
        return self.tensors[name]


class Deferred:
    """A model-input tensor to come: its dtype and shape, which the sync stage checks, and `compute`."""

    dtype = np.dtype(np.float32)

    def __init__(self, frame: _Frame, name: str, shape: tuple[int, ...]) -> None:
        self.frame, self.name, self.shape = frame, name, shape

    def compute(self) -> np.ndarray:
        return self.frame.tensor(self.name)


def resolve(arrays: Mapping[str, Any]) -> dict[str, Any]:
    """`arrays` with every Deferred computed."""
    return {name: a.compute() if isinstance(a, Deferred) else a for name, a in arrays.items()}
