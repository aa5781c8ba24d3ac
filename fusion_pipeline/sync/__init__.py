"""Synchronization: the ApproximateTime policy, audio windows, the Synchronizer, sets, the sync stage,
replay order."""

from __future__ import annotations

from fusion_pipeline.sync.audio import AudioWindow
from fusion_pipeline.sync.errors import InputError, SyncError
from fusion_pipeline.sync.policy import (
    DROP_REASONS,
    ApproximateTimePolicy,
    DropCounter,
    MatchedSet,
)
from fusion_pipeline.sync.reorder import (
    END_MODALITY,
    END_STREAM,
    SKIP_STREAM,
    ReplayOrder,
    ReplayOrderCounters,
    end_endpoint,
    skip_marker,
)
from fusion_pipeline.sync.sets import (
    INPUT_REASONS,
    SetBuilder,
)
from fusion_pipeline.sync.settings import StreamSync, SyncSettings, settings_from_config
from fusion_pipeline.sync.stage import SyncStage
from fusion_pipeline.sync.synchronizer import FusedSet, SyncCounters, Synchronizer

__all__ = [
    "ApproximateTimePolicy",
    "AudioWindow",
    "DROP_REASONS",
    "DropCounter",
    "END_MODALITY",
    "END_STREAM",
    "FusedSet",
    "INPUT_REASONS",
    "InputError",
    "MatchedSet",
    "ReplayOrder",
    "ReplayOrderCounters",
    "SKIP_STREAM",
    "SetBuilder",
    "StreamSync",
    "SyncCounters",
    "SyncError",
    "SyncSettings",
    "SyncStage",
    "Synchronizer",
    "end_endpoint",
    "settings_from_config",
    "skip_marker",
]
