"""The synchronization layer's errors: bad settings or a caller's bad input to the Synchronizer, and an
ingest sample the sync stage refuses and counts. (A config the model cannot take is refused earlier, by
fusion_pipeline.binding, as a ContractError.)"""

from __future__ import annotations

from fusion_pipeline.errors import DropError, FusionError

__all__ = ["InputError", "SyncError"]


class SyncError(FusionError):
    """Bad synchronizer settings or input: an unknown stream, a bad stamp or audio chunk."""


class InputError(DropError):
    """An ingest sample the synchronizer cannot use; `reason` is one of sets.INPUT_REASONS."""
