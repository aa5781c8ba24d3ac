"""The preprocessors' errors."""

from __future__ import annotations

from fusion_pipeline.errors import FusionError

__all__ = ["PreprocessError"]


class PreprocessError(FusionError):
    """A sensor payload cannot be turned into a model input, or a model asks for a front end this
    pipeline does not implement; the message names the modality and why."""

    def __init__(self, modality: str, detail: str) -> None:
        super().__init__(f"{modality}: {detail}")
        self.modality = modality
        self.detail = detail
