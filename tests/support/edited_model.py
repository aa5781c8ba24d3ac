"""The shipped model with its contract JSON edited, the graph itself unchanged: a model that does not fit."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import onnx

from fusion_pipeline.config import load_config
from fusion_pipeline.contract import CONTRACT_KEY
from fusion_pipeline.inference import model_path


def model_with_contract(folder: Path, edit: Callable[[dict], None]) -> Path:
    """The shipped model, its contract JSON passed through `edit`, saved as FOLDER/edited.onnx."""
    model = onnx.load(str(model_path(load_config())))
    for prop in model.metadata_props:
        if prop.key == CONTRACT_KEY:
            raw = json.loads(prop.value)
            edit(raw)
            prop.value = json.dumps(raw)
    path = folder / "edited.onnx"
    onnx.save(model, str(path))
    return path


def camera_64(raw: dict) -> None:
    """The contract edit of a model trained on 64x64 camera frames."""
    next(s for s in raw["inputs"] if s["name"] == "camera")["shape"] = [3, 64, 64]
