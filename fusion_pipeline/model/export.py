"""Export a FusionNet to ONNX with the model contract in its metadata and a dynamic batch dimension.

We use the TorchScript-based exporter (`dynamo=False`): for this small, static-shape network it emits a
compact single-file graph that ONNX Runtime fuses well (Conv+BatchNorm, LayerNorm, GELU), and it needs no
extra tracing machinery at export time. The contract's `preprocess` fields are filled from the
preprocessing modules' PARAMS, so a model always says which front end its inputs must come from.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch

from fusion_pipeline.contract import CONTRACT_KEY, MODALITIES, ModelContract, default_contract
from fusion_pipeline.model.errors import ModelError
from fusion_pipeline.model.net import OUTPUT_NAMES, FusionNet
from fusion_pipeline.preprocess import fill_contract

__all__ = [
    "OPSET",
    "all_presence_masks",
    "check_parity",
    "contract_for",
    "export_onnx",
    "random_inputs",
]

log = logging.getLogger(__name__)

OPSET = 17


def contract_for(model: FusionNet) -> ModelContract:
    """The default contract, labelled with the model's fusion strategy and its preprocessing parameters."""
    return fill_contract(default_contract(model.config.fusion))


def _example_inputs(contract: ModelContract, batch: int) -> tuple[torch.Tensor, ...]:
    return tuple(torch.zeros(batch, *spec.shape) for spec in contract.inputs)


def export_onnx(model: FusionNet, path: str | Path, contract: ModelContract | None = None) -> ModelContract:
    """Write `model` (put in eval mode) to `path`; return the contract stored in its metadata."""
    contract = contract or contract_for(model)
    input_names = [spec.name for spec in contract.inputs]
    output_names = [spec.name for spec in contract.outputs]
    if tuple(output_names) != OUTPUT_NAMES:
        raise ModelError(f"contract outputs {output_names} differ from the network's {list(OUTPUT_NAMES)}")
    model.eval()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # The TorchScript exporter announces its deprecation on every call; the choice is deliberate.
        warnings.simplefilter("ignore", category=DeprecationWarning)
        warnings.simplefilter("ignore", category=FutureWarning)
        # Shapes read in forward() are traced as Shape ops (dynamic_axes), which is what we want.
        warnings.simplefilter("ignore", category=torch.jit.TracerWarning)
        torch.onnx.export(
            model,
            _example_inputs(contract, batch=2),
            str(path),
            input_names=input_names,
            output_names=output_names,
            dynamic_axes={name: {0: "batch"} for name in input_names + output_names},
            opset_version=OPSET,
            dynamo=False,
            do_constant_folding=True,
        )
    proto = onnx.load(str(path))
    graph_inputs = [i.name for i in proto.graph.input]
    if graph_inputs != input_names:
        # The tracer drops inputs the network never reads (a single-modality baseline); such a graph
        # would not honour the contract.
        raise ModelError(f"exported graph inputs {graph_inputs} differ from the contract's {input_names}")
    entry = proto.metadata_props.add()
    entry.key, entry.value = CONTRACT_KEY, contract.to_json()
    proto.producer_name = "fusion-pipeline"
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    log.info("exported %s (%s fusion, %.2f MB)", path, model.config.fusion, path.stat().st_size / 1e6)
    return contract


def all_presence_masks() -> torch.Tensor:
    """Every presence pattern, [16, 4]; row k has bit i of k set where MODALITIES[i] is present."""
    n = len(MODALITIES)
    return torch.tensor([[float((k >> i) & 1) for i in range(n)] for k in range(2**n)])


def random_inputs(contract: ModelContract, presence: torch.Tensor, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random inputs for each presence row; about a third of the radar slots hold a detection."""
    gen = torch.Generator().manual_seed(seed)
    batch = len(presence)
    inputs = {s.name: torch.randn(batch, *s.shape, generator=gen) for s in contract.inputs}
    inputs["radar_mask"] = (
        torch.rand(batch, *contract.input("radar_mask").shape, generator=gen) < 0.3
    ).float()
    inputs[contract.presence_input] = presence
    return inputs


def check_parity(model: FusionNet, path: str | Path, rtol: float = 1e-3, atol: float = 1e-4) -> float:
    """Run torch and ONNX Runtime on random inputs under all 16 presence masks; return the largest
    absolute difference, or raise ModelError if any output is outside the tolerance or not finite."""
    import onnxruntime as ort

    contract = contract_for(model)
    inputs = random_inputs(contract, all_presence_masks())
    with torch.no_grad():
        expected = [t.numpy() for t in model.eval()(*(inputs[s.name] for s in contract.inputs))]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(list(OUTPUT_NAMES), {k: v.numpy() for k, v in inputs.items()})
    worst = 0.0
    for name, e, g in zip(OUTPUT_NAMES, expected, got, strict=True):
        if not np.isfinite(g).all() or not np.allclose(g, e, rtol=rtol, atol=atol):
            raise ModelError(f"{path}: output {name!r} differs from torch (max {np.abs(g - e).max():.3g})")
        worst = max(worst, float(np.abs(g - e).max()))
    return worst
