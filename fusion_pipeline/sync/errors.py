"""The synchronization layer's errors: bad settings or a caller's bad input to the Synchronizer, a
config the set layout cannot use, and an ingest sample the sync stage refuses and counts."""

from __future__ import annotations

from fusion_pipeline.errors import DropError, FusionError

__all__ = ["InputError", "SetLayoutError", "SyncError"]


class SyncError(FusionError):
    """Bad synchronizer settings or input: an unknown stream, a bad stamp or audio chunk."""


class SetLayoutError(FusionError):
    """The config's streams cannot fill the model contract's inputs (raised at node start)."""


class InputError(DropError):
    """An ingest sample the synchronizer cannot use; `reason` is one of sets.INPUT_REASONS."""
