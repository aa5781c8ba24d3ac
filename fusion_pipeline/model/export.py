"""Export to ONNX with the model contract in the metadata and a dynamic batch dimension.

`export_model` exports any torch module whose forward takes the contract's graph inputs
(`contract.tensors`: each sensor input, a radar's mask after it, the presence vector last) in that order and
returns the contract's outputs in order: a user's own model (docs/MODEL.md, "Bring your own model"), or a
FusionNet (alone or with its `SingleSensorFallback`) through `export_onnx`, which adds a parity check
against torch under many presence masks.

We use the TorchScript-based exporter (`dynamo=False`): for these small, static-shape networks it emits a
compact single-file graph that ONNX Runtime fuses well (Conv+BatchNorm, LayerNorm, GELU), and it needs no
extra tracing machinery at export time. A GRU audio encoder exports as one ONNX GRU node.
"""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx.compose import add_prefix_graph

from fusion_pipeline.contract import CONTRACT_KEY, ModelContract
from fusion_pipeline.files import write_new
from fusion_pipeline.model.errors import ModelError
from fusion_pipeline.model.fallback import SingleSensorFallback
from fusion_pipeline.model.net import OUTPUT_NAMES, FusionNet

__all__ = [
    "OPSET",
    "check_parity",
    "contract_for",
    "export_model",
    "export_onnx",
    "presence_masks",
    "random_inputs",
]

log = logging.getLogger(__name__)

OPSET = 17
BATCH = "batch"  # the name of every tensor's dynamic first dimension


def export_model(
    module: torch.nn.Module,
    contract: ModelContract,
    path: str | Path,
    *,
    verify: Callable[[Path], object] | None = None,
) -> ModelContract:
    """Export `module` (put in eval mode) to a new ONNX file at `path` with `contract` in its metadata
    (key CONTRACT_KEY) and a dynamic batch dimension; return the contract.

    `module(*tensors)` must take the contract's graph inputs in `contract.tensors` order, each with a batch
    dimension first, and return one tensor per contract output, in order (a single tensor for one output).
    An input the module never reads stays a graph input. Before anything is written the outputs are
    checked against the contract, and the written graph's inputs and outputs (names and shapes, the batch
    dynamic) are checked with ONNX Runtime. The file is written beside `path` and linked into place once
    it passed (and `verify(partial_path)`, if given, returned): an existing file is never overwritten,
    and a failed export leaves nothing behind."""
    path = Path(path)
    if path.exists():
        raise ModelError(f"{path}: exists already, not overwriting it")
    module.eval()
    example = random_inputs(contract, torch.ones(2, len(contract.presence_order)))
    _check_outputs(_outputs(module, contract, example), contract, batch=2)
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(partial: Path) -> None:
        _export(module, contract, example, partial)
        _check_graph(module, contract, partial)
        if verify is not None:
            verify(partial)

    write_new(path, write, ModelError)
    log.info("exported %s (%.2f MB)", path, path.stat().st_size / 1e6)
    return contract


def _outputs(
    module: torch.nn.Module, contract: ModelContract, inputs: dict[str, torch.Tensor]
) -> Sequence[object]:
    """`module` run on `inputs` in contract order, its result as a sequence of outputs."""
    try:
        with torch.no_grad():
            out = module(*(inputs[name] for name in contract.tensors))
    except (TypeError, RuntimeError) as exc:
        shapes = ", ".join(f"{n} {tuple(t.shape)}" for n, t in inputs.items())
        raise ModelError(f"the module fails on the contract's inputs ({shapes}): {exc}") from exc
    return out if isinstance(out, (tuple, list)) else (out,)


def _check_outputs(outputs: Sequence[object], contract: ModelContract, batch: int) -> None:
    names = [s.name for s in contract.outputs]
    if len(outputs) != len(names):
        raise ModelError(
            f"the module returns {len(outputs)} outputs, the contract declares {len(names)} ({names})"
        )
    for i, (out, spec) in enumerate(zip(outputs, contract.outputs, strict=True)):
        if not isinstance(out, torch.Tensor):
            raise ModelError(
                f"output {i} ({spec.name!r}): the module returns a {type(out).__name__}, not a tensor"
            )
        if tuple(out.shape) != (batch, *spec.shape):
            raise ModelError(
                f"output {i} ({spec.name!r}): the module returns shape {tuple(out.shape)} for a batch of "
                f"{batch}, the contract declares {(batch, *spec.shape)}"
            )
        if out.dtype != torch.float32:  # the pipeline reads float32 outputs only (inference._check_graph)
            raise ModelError(
                f"output {i} ({spec.name!r}): the module returns {out.dtype}; the pipeline's outputs are "
                "float32 (cast it in the module: .float())"
            )


def _export(
    module: torch.nn.Module, contract: ModelContract, example: dict[str, torch.Tensor], path: Path
) -> None:
    """Trace `module` (a fallback as one routed graph) into `path`, the contract in the metadata."""
    if isinstance(module, SingleSensorFallback):
        proto = _routed(module, contract, example)
    else:
        proto = _trace(module, contract, example, [spec.name for spec in contract.outputs])
    entry = proto.metadata_props.add()
    entry.key, entry.value = CONTRACT_KEY, contract.to_json()
    proto.producer_name = "fusion-pipeline"
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))


def _trace(
    module: torch.nn.Module,
    contract: ModelContract,
    example: dict[str, torch.Tensor],
    outputs: list[str],
    scalars: tuple[str, ...] = (),
) -> onnx.ModelProto:
    """`module` traced to ONNX, its graph inputs the contract's and its outputs named `outputs`, each with
    a dynamic batch dimension but the `scalars`."""
    input_names = list(contract.tensors)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript exporter announces its deprecation on every call; the choice is deliberate.
        warnings.simplefilter("ignore", category=DeprecationWarning)
        warnings.simplefilter("ignore", category=FutureWarning)
        # Shapes read in forward() are traced as Shape ops (dynamic_axes), which is what we want.
        warnings.simplefilter("ignore", category=torch.jit.TracerWarning)
        # Said of every GRU: RecurrentEncoder makes its initial state from the batch, so the graph takes any
        # batch size (tests/unit/model/test_impute.py runs batches 1 to 32).
        warnings.filterwarnings("ignore", message="Exporting a model to ONNX with a batch_size other than 1")
        torch.onnx.export(
            module,
            tuple(example[name] for name in input_names),
            buffer,
            input_names=input_names,
            output_names=outputs,
            dynamic_axes={name: {0: BATCH} for name in input_names + outputs if name not in scalars},
            opset_version=OPSET,
            dynamo=False,
            do_constant_folding=True,
        )
    proto = onnx.load_from_string(buffer.getvalue())
    _restore_unread_inputs(proto.graph, contract)
    return proto


def _routed(
    model: SingleSensorFallback, contract: ModelContract, example: dict[str, torch.Tensor]
) -> onnx.ModelProto:
    """`model` as one ONNX If on `model.condition()`: a batch where some row has one modality alone runs
    the whole fallback (every single-sensor model and the per-row pick), any other batch the fused network
    alone, at its own cost. Each branch is a traced graph, its names prefixed so the two cannot collide;
    both read the outer graph's inputs by name."""
    outputs = [spec.name for spec in contract.outputs]
    fused = _trace(model.fused, contract, example, outputs)
    every = _trace(model, contract, example, outputs)
    condition = add_prefix_graph(
        _trace(model.condition(), contract, example, ["any_lone"], ("any_lone",)).graph,
        "route/",
        rename_inputs=False,
    )

    def branch(traced: onnx.ModelProto, prefix: str) -> onnx.GraphProto:
        graph = add_prefix_graph(traced.graph, prefix, rename_inputs=False)
        del graph.input[:]  # a branch reads the outer graph's inputs
        return graph

    route = onnx.helper.make_node(
        "If",
        [condition.output[0].name],
        outputs,
        name="single_sensor_fallback",
        then_branch=branch(every, "fallback/"),
        else_branch=branch(fused, "fused/"),
    )
    graph = onnx.helper.make_graph(
        [*condition.node, route],
        "single_sensor_fallback",
        list(fused.graph.input),
        list(fused.graph.output),
        initializer=list(condition.initializer),
    )
    return onnx.helper.make_model(graph, opset_imports=fused.opset_import, ir_version=fused.ir_version)


def _restore_unread_inputs(graph: onnx.GraphProto, contract: ModelContract) -> None:
    """The tracer drops the inputs a module never reads (a single-modality baseline ignores the other
    sensors); put them back, in contract order, so the graph takes every tensor of the contract."""
    given = {value.name: value for value in graph.input}
    for name, shape in contract.tensors.items():
        if name not in given:
            given[name] = onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, [BATCH, *shape])
    ordered = [given.pop(name) for name in contract.tensors] + list(given.values())
    del graph.input[:]
    graph.input.extend(ordered)


def _check_graph(module: torch.nn.Module, contract: ModelContract, path: Path) -> None:
    """The graph's inputs and outputs are the contract's (names, shapes, a dynamic batch): declared, and
    as ONNX Runtime runs it on a batch other than the traced one."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    declared = [(i.name, i.shape) for i in session.get_inputs()]
    expected = [(name, [BATCH, *shape]) for name, shape in contract.tensors.items()]
    if declared != expected:
        raise ModelError(f"{path}: graph inputs {declared} differ from the contract's {expected}")
    outputs = [o.name for o in session.get_outputs()]
    if outputs != [s.name for s in contract.outputs]:
        raise ModelError(
            f"{path}: graph outputs {outputs} differ from the contract's {[s.name for s in contract.outputs]}"
        )
    feeds = random_inputs(contract, torch.ones(3, len(contract.presence_order)), seed=1)
    got = session.run(outputs, {name: t.numpy() for name, t in feeds.items()})
    try:
        _check_outputs([torch.from_numpy(g) for g in got], contract, batch=3)
    except ModelError as exc:
        raise ModelError(f"{path}: ONNX Runtime: {exc}") from exc


# ---- FusionNet -----------------------------------------------------------------------------------------


#: What `export_onnx` takes: a FusionNet, or one with its single-sensor fallback.
Exportable = FusionNet | SingleSensorFallback


def contract_for(model: Exportable) -> ModelContract:
    """The contract `model` was built for, labelled with its fusion strategy (a fallback labels its own)."""
    if isinstance(model, SingleSensorFallback):
        return model.contract
    return replace(model.contract, fusion=model.config.fusion)


def export_onnx(model: Exportable, path: str | Path) -> float:
    """Export `model` with `export_model` to a new file at `path`, linked into place only once ONNX Runtime
    matched torch under `presence_masks` (`check_parity`); return the largest difference."""
    worst: list[float] = []
    export_model(model, contract_for(model), path, verify=lambda p: worst.append(check_parity(model, p)))
    return worst[0]


def presence_masks(n_inputs: int, limit: int = 64) -> torch.Tensor:
    """Presence patterns over `n_inputs` bits, one per row. Every pattern when there are at most `limit`
    (row k has bit i set where k has); else none, all, each input alone, each input missing, and seeded
    random ones up to `limit` rows."""
    if 2**n_inputs <= limit:
        codes = torch.arange(2**n_inputs)
    else:
        one = 1 << torch.arange(n_inputs)
        every = 2**n_inputs - 1
        fixed = torch.cat([torch.tensor([0, every]), one, every - one])
        drawn = torch.randint(
            every + 1, (max(limit - len(fixed), 0),), generator=torch.Generator().manual_seed(0)
        )
        codes = torch.cat([fixed, drawn])
    return ((codes[:, None] >> torch.arange(n_inputs)) & 1).float()


def random_inputs(contract: ModelContract, presence: torch.Tensor, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random graph inputs for each presence row, by tensor name; about a third of a radar's slots hold a
    detection."""
    gen = torch.Generator().manual_seed(seed)
    batch = len(presence)
    inputs = {}
    for spec in contract.inputs:
        inputs[spec.name] = torch.randn(batch, *spec.shape, generator=gen)
        if spec.mask:
            inputs[spec.mask] = (torch.rand(batch, *spec.tensors[spec.mask], generator=gen) < 0.3).float()
    inputs[contract.presence] = presence
    return inputs


def check_parity(model: Exportable, path: str | Path, rtol: float = 1e-3, atol: float = 1e-4) -> float:
    """Run torch and ONNX Runtime on random inputs under `presence_masks`, all in one batch and each row as
    a batch of its own (a batch takes one branch of a routed graph); return the largest absolute
    difference, or raise ModelError if any output is outside the tolerance or not finite."""
    import onnxruntime as ort

    contract = contract_for(model)
    inputs = random_inputs(contract, presence_masks(len(contract.presence_order)))
    with torch.no_grad():
        expected = [t.numpy() for t in model.eval()(*(inputs[name] for name in contract.tensors))]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {k: v.numpy() for k, v in inputs.items()}
    rows = len(inputs[contract.presence])
    batches = [slice(0, rows), *(slice(i, i + 1) for i in range(rows))]
    worst = 0.0
    for batch in batches:
        got = session.run(list(OUTPUT_NAMES), {k: v[batch] for k, v in feeds.items()})
        for name, e, g in zip(OUTPUT_NAMES, expected, got, strict=True):
            e = e[batch]
            if not np.isfinite(g).all() or not np.allclose(g, e, rtol=rtol, atol=atol):
                raise ModelError(
                    f"{path}: output {name!r} differs from torch (max {np.abs(g - e).max():.3g})"
                )
            worst = max(worst, float(np.abs(g - e).max()))
    return worst
