"""ONNX Runtime side of the model: read the contract a model carries. No torch here.

The live inference node builds on this module (provider choice, IO binding); so far it reads the
contract from the model's metadata, which is what `fusion-pipeline model info` and the node's start-up
check need.
"""

from __future__ import annotations

from pathlib import Path

from fusion_pipeline.contract import CONTRACT_KEY, ContractError, ModelContract

__all__ = ["load_contract"]


def load_contract(model_path: str | Path) -> ModelContract:
    """The contract stored under metadata key CONTRACT_KEY of the ONNX model at `model_path`."""
    import onnxruntime as ort  # imported here so that importing this module stays cheap

    path = Path(model_path)
    if not path.is_file():
        raise ContractError(f"{path}: no such model file")
    try:
        options = ort.SessionOptions()
        # Metadata only: skip graph optimisation, which is the slow part of loading a session.
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own untyped errors for a corrupt or non-ONNX file
        raise ContractError(f"{path}: not a loadable ONNX model: {exc}") from exc
    metadata = session.get_modelmeta().custom_metadata_map
    if CONTRACT_KEY not in metadata:
        raise ContractError(f"{path}: ONNX metadata has no {CONTRACT_KEY!r} key; export it with the contract")
    try:
        return ModelContract.from_json(metadata[CONTRACT_KEY])
    except ContractError as exc:
        raise ContractError(f"{path}: {exc}") from exc
