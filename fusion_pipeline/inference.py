"""ONNX Runtime side of the fused model: contract check, execution-provider choice, inference, results.

No torch here. The inference stage, `InferenceStage`, is what the inference node runs: one `ModelRuntime`
built at start, and `InferenceStage.run` for every set, which infers and turns the outputs into the result
message of docs/PROTOCOL.md section 8 (`result_sample`) with the inference stage stamps; no sockets.

Providers. The config lists them in order of preference; ``auto`` expands to TensorRT (only when
``model.tensorrt`` is on: building an engine takes minutes), then CUDA, then the CPU, which is always
the last resort. A provider that this onnxruntime build lacks is skipped at planning time, and so is one
whose shared library does not load here (`library_error`: no CUDA libraries, no NVIDIA driver), probed
quietly with ctypes; asked for anyway, onnxruntime would print its load errors before falling back. One
the machine still cannot run (a driver without a usable GPU) is dropped by onnxruntime while it creates
the session, with its own log. Either way `ModelRuntime.provider` is what `session.get_providers()` says is
in use, and `ModelRuntime.fell_back` is true when that is not the first choice of this build; then
`ModelRuntime.describe()`, the node's one line about providers, says so and why. The code imports only
``onnxruntime``, which the ``onnxruntime-gpu`` and the CPU-only ``onnxruntime`` wheels both provide.

On CUDA and TensorRT, inputs are bound from host memory and outputs are bound on the device afresh at
each run (IO binding), allocated by onnxruntime from its memory pool (arena) in the shape the run gives,
so an output of another shape reaches the contract check as on the CPU; the small outputs are copied
back after the run. Every session runs a few warm-up calls at start so that lazy initialisation (cuDNN
algorithm search, TensorRT engine build or cache load) never lands on the first real set.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fusion_pipeline.binding import Bindings, bind
from fusion_pipeline.config import SHIPPED, Config, ModelConfig, shipped_file
from fusion_pipeline.contract import CONTRACT_KEY, RESULT_PRESENCE, ModelContract
from fusion_pipeline.errors import ContractError
from fusion_pipeline.files import not_a_file
from fusion_pipeline.protocol import CAPTURE, INFERENCE_END, INFERENCE_START, RESULT_MODALITY, RESULT_STREAM
from fusion_pipeline.transport.wire import Sample

__all__ = [
    "PROVIDERS",
    "InferenceStage",
    "ModelRuntime",
    "ProviderPlan",
    "load_bindings",
    "choose_providers",
    "engine_cache_dir",
    "hash_model",
    "library_error",
    "load_contract",
    "model_files",
    "model_path",
    "resolve_model",
    "result_sample",
    "wants_tensorrt",
]

log = logging.getLogger(__name__)


#: Config provider names -> onnxruntime execution provider names.
PROVIDERS: dict[str, str] = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}
_GPU_PROVIDERS = (PROVIDERS["tensorrt"], PROVIDERS["cuda"])
WARM_UP_RUNS = 3
_NOT_IN_BUILD = "(not in this onnxruntime build)"


def model_path(config: Config) -> Path:
    """The model file the config names (`resolve_model`); ``""`` is the shipped default model."""
    return resolve_model(config.model.path or SHIPPED + "default.onnx")


def resolve_model(path: str) -> Path:
    """A model's file: a path (relative: from the working directory), or ``package:NAME`` for one
    shipped in the package."""
    if path.startswith(SHIPPED):
        return Path(str(shipped_file(path, "models", ContractError)))
    return Path(path).expanduser()


def model_files(path: Path) -> list[Path]:
    """The model file and the external data files its tensors name (a model over protobuf's 2 GB, or
    one saved with its weights beside it), each once: every file its results depend on."""
    import onnx  # parses the graph only (load_external_data=False): no weights are read

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError, an OSError: the file is no ONNX model
        raise ContractError(f"{path}: not a loadable ONNX model: {exc}") from exc
    files = {path: None}  # a dict: each once, in order (a model may keep a file per tensor)
    for tensor in _tensors(model.graph):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            location = next((e.value for e in tensor.external_data if e.key == "location"), "")
            files.setdefault(path.parent / location)
    return list(files)


def _tensors(graph: Any) -> Iterator[Any]:
    """Every TensorProto of an ONNX graph and of its subgraphs (an `If` node's branches)."""
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield from (sparse.values, sparse.indices)
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            for subgraph in (*([attribute.g] if attribute.HasField("g") else []), *attribute.graphs):
                yield from _tensors(subgraph)


def hash_model(path: Path, digest: Any) -> Any:
    """`digest` (a hashlib object) updated with the bytes of the model's files (`model_files`), in order:
    a model retrained under the same name, its weights beside it or inside, hashes otherwise. A model of
    one file hashes as its bytes alone."""
    for file in model_files(path):
        try:
            with open(file, "rb") as f:
                while chunk := f.read(1 << 20):
                    digest.update(chunk)
        except OSError as exc:
            raise ContractError(f"{path}: cannot read {file}: {exc.strerror}") from exc
    return digest


def engine_cache_dir(model: Path | None = None) -> Path:
    """Where TensorRT keeps built engines across runs: $FUSION_PIPELINE_CACHE/tensorrt, else the user's
    cache directory. Not the run directory: a temp run dir dies with the run, and a rebuild takes minutes.
    With `model`, that model's own folder, named by 16 hex digits of its sha256 (`hash_model`): TensorRT
    names an engine by the model's path and graph, not its weights, so a model retrained in place would
    load the engine of its old weights."""
    root = os.environ.get("FUSION_PIPELINE_CACHE") or Path(
        os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "fusion-pipeline"
    )
    cache = Path(root) / "tensorrt"
    return cache if model is None else cache / hash_model(model, hashlib.sha256()).hexdigest()[:16]


def load_contract(model_path: str | Path) -> ModelContract:
    """The contract stored under metadata key CONTRACT_KEY of the ONNX model at `model_path`."""
    import onnxruntime as ort  # imported here so that importing this module stays cheap

    path = Path(model_path)
    if problem := not_a_file(path, "model file"):
        raise ContractError(f"{path}: {problem}")
    try:
        options = ort.SessionOptions()
        # Metadata only: skip graph optimisation, which is the slow part of loading a session.
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        # Errors only: onnxruntime's warnings (an old opset, say) would come before the refusal below,
        # which says what is wrong; the session that runs the model logs as configured.
        options.log_severity_level = 3
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own untyped errors for a corrupt or non-ONNX file
        raise ContractError(f"{path}: not a loadable ONNX model: {exc}") from exc
    metadata = session.get_modelmeta().custom_metadata_map
    if CONTRACT_KEY not in metadata:
        raise ContractError(f"{path}: ONNX metadata has no {CONTRACT_KEY!r} key; export it with the contract")
    try:
        contract = ModelContract.from_json(metadata[CONTRACT_KEY])
    except ContractError as exc:
        raise ContractError(f"{path}: {exc}") from exc
    _check_graph(path, session, contract)
    return contract


def _check_graph(path: Path, session: Any, contract: ModelContract) -> None:
    """The graph must be what its own contract says (a hand-edited file, or another exporter's, may
    differ): each input the pipeline feeds and output it reads, by name, float32, rank and the sizes ONNX
    Runtime knows (declared or inferred), no input it would leave unfed and no output it would not read.
    Checked when the contract is read, so `run`, `replay` and every node refuse such a model before
    anything starts."""
    inputs = {i.name: i for i in session.get_inputs()}
    unfed = sorted(inputs.keys() - contract.tensors.keys())
    if unfed:
        # A renamed tensor is both: say the contract's name the graph lacks beside it.
        absent = sorted(contract.tensors.keys() - inputs.keys())
        lacks = f" (its contract's {absent} are not graph inputs)" if absent else ""
        raise ContractError(
            f"{path}: graph inputs {unfed} are not in its contract, so nothing would feed them{lacks}"
        )
    outputs = {o.name: o for o in session.get_outputs()}
    declared = {s.name: s.shape for s in contract.outputs}
    for what, graph, wanted in (("input", inputs, contract.tensors), ("output", outputs, declared)):
        for name, shape in wanted.items():
            node = graph.get(name)
            if node is None:
                raise ContractError(f"{path}: contract {what} {name!r} is not a graph {what}")
            if node.type != "tensor(float)":
                raise ContractError(
                    f"{path}: graph {what} {name!r} is {node.type}; the pipeline's {what}s are tensor(float)"
                )
            batch_and_shape = list(node.shape)
            if len(batch_and_shape) != len(shape) + 1 or any(
                isinstance(d, int) and d != s for d, s in zip(batch_and_shape[1:], shape, strict=True)
            ):
                raise ContractError(
                    f"{path}: graph {what} {name!r} has shape {batch_and_shape} (batch first), its contract "
                    f"says {list(shape)}"
                )
            # Inputs only: onnxruntime refuses a batch-1 feed to a fixed batch, but it does not hold an
            # output to its declared batch (the warm-up checks the batch an output really has).
            if what == "input" and isinstance(batch_and_shape[0], int) and batch_and_shape[0] != 1:
                raise ContractError(
                    f"{path}: graph {what} {name!r} has a fixed batch of {batch_and_shape[0]} (its first "
                    "dimension); the pipeline runs one set at a time: export it with batch 1 or a dynamic one"
                )
    unread = sorted(outputs.keys() - declared.keys())
    if unread:
        raise ContractError(
            f"{path}: graph outputs {unread} are not in its contract, so nothing would read them: declare "
            "them (kind opaque: results carry them as they are) or export the model without them"
        )


def load_bindings(config: Config) -> Bindings:
    """The config's streams bound to the inputs of the model it names; ContractError (naming the
    config key and the model input) when they do not fit. Every node that needs the contract calls this."""
    path = model_path(config)
    return bind(config, load_contract(path), f"model {path}")


def wants_tensorrt(model: ModelConfig) -> bool:
    """Whether the config asks for TensorRT: named, or opted into under ``auto``."""
    return "tensorrt" in model.providers or (model.tensorrt and "auto" in model.providers)


@dataclass(frozen=True)
class ProviderPlan:
    """What to ask onnxruntime for: (provider, options) in order of preference, what was skipped (each
    with its reason), and the first choice among the providers of this build (usable or not)."""

    providers: tuple[tuple[str, dict[str, str]], ...]
    skipped: tuple[str, ...] = field(default=())
    first_choice: str = PROVIDERS["cpu"]

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.providers]


def choose_providers(
    requested: Sequence[str],
    available: Sequence[str],
    *,
    tensorrt: bool,
    tf32: bool,
    engine_cache: Path,
    device_id: int = 0,
    probe: Callable[[str], str | None] | None = None,
) -> ProviderPlan:
    """Expand the config's provider list against what this onnxruntime build offers.

    ``auto`` = TensorRT (if `tensorrt`) > CUDA > CPU; explicit names keep their order, and the CPU is
    always appended as the last resort (onnxruntime also needs it for operators a GPU provider lacks).
    `probe(provider)` (e.g. `library_error`) says why a provider of the build cannot load here, or None.
    """
    order: list[str] = []
    for name in requested:
        if name == "auto":
            order += (["tensorrt"] if tensorrt else []) + ["cuda", "cpu"]
        elif name not in PROVIDERS:
            raise ContractError(
                f"model.providers: unknown provider {name!r}; known: auto, {', '.join(PROVIDERS)}"
            )
        else:
            order.append(name)
    order.append("cpu")
    chosen: list[tuple[str, dict[str, str]]] = []
    skipped: list[str] = []
    in_build = [name for name in dict.fromkeys(order) if PROVIDERS[name] in available]  # de-duplicated
    for name in dict.fromkeys(order):
        provider = PROVIDERS[name]
        if name not in in_build:
            skipped.append(f"{provider} {_NOT_IN_BUILD}")
        elif provider != PROVIDERS["cpu"] and probe is not None and (error := probe(provider)):
            skipped.append(f"{provider} ({error})")
        else:
            chosen.append((provider, _provider_options(name, tf32, engine_cache, device_id)))
    return ProviderPlan(
        tuple(chosen), tuple(skipped), PROVIDERS[in_build[0]] if in_build else PROVIDERS["cpu"]
    )


def library_error(provider: str) -> str | None:
    """Why `provider`'s shared library (or one it needs: CUDA, cuDNN, TensorRT, the NVIDIA driver) does
    not load in this process, or None when it loads or the build keeps it elsewhere (onnxruntime then
    decides). Loading it is what onnxruntime would do first; ctypes does it without a word on stderr."""
    import onnxruntime as ort

    capi = Path(ort.__file__).parent / "capi"
    suffix = next((k for k, v in PROVIDERS.items() if v == provider), "")
    library = capi / f"libonnxruntime_providers_{suffix}.so"
    if not library.is_file():
        return None
    try:
        # Provider libraries take their host interface from this one, as onnxruntime loads it: global.
        ctypes.CDLL(str(capi / "libonnxruntime_providers_shared.so"), mode=ctypes.RTLD_GLOBAL)
        ctypes.CDLL(str(library))
    except OSError as exc:
        return f"cannot load {library.name}: {exc}"
    return None


def _provider_options(name: str, tf32: bool, engine_cache: Path, device_id: int) -> dict[str, str]:
    if name == "tensorrt":
        return {
            "device_id": str(device_id),
            "trt_engine_cache_enable": "True",
            "trt_engine_cache_path": str(engine_cache),
            "trt_timing_cache_enable": "True",
            "trt_timing_cache_path": str(engine_cache),
        }
    if name == "cuda":
        return {"device_id": str(device_id), "use_tf32": "1" if tf32 else "0"}
    return {}


class ModelRuntime:
    """One onnxruntime session of a fused model, batch 1, with the config's streams bound to its inputs."""

    def __init__(self, config: Config, *, warm_up: int = WARM_UP_RUNS) -> None:
        import onnxruntime as ort

        self.path = model_path(config)
        self.bindings = load_bindings(config)
        self.contract = self.bindings.contract
        engine_cache = engine_cache_dir()  # unused unless TensorRT is wanted: not made, the model not hashed
        if wants_tensorrt(config.model):
            engine_cache = engine_cache_dir(self.path)
            engine_cache.mkdir(parents=True, exist_ok=True)
        self.plan = choose_providers(
            config.model.providers,
            ort.get_available_providers(),
            tensorrt=config.model.tensorrt,
            tf32=config.model.tf32,
            engine_cache=engine_cache,
            probe=library_error,
        )
        options = ort.SessionOptions()
        options.intra_op_num_threads = config.model.intra_op_threads
        # Idle worker threads would otherwise spin after every call, burning the cores that the ingest
        # nodes and the synchronizer need; one set at a time gains nothing from spinning.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(
                str(self.path), options, providers=[(n, o) for n, o in self.plan.providers]
            )
        except Exception as exc:  # onnxruntime's own untyped errors
            raise ContractError(f"{self.path}: onnxruntime cannot create a session: {exc}") from exc
        self.provider: str = self.session.get_providers()[0]
        self.fell_back = self.provider != self.plan.first_choice
        # Each input is fed from a buffer of its own, all at one alignment: onnxruntime's CPU kernels
        # sum in another order where an array starts elsewhere in a cache line, and a set's arrays lie
        # wherever their message put them (a socket frame, a log record): the same set would give
        # results that differ in the last bits between a live run, a replay and an offline replay.
        self._inputs = {
            name: _aligned((1, *shape))
            for spec in self.contract.inputs
            for name, shape in spec.tensors.items()
        }
        self._presence = _aligned((1, len(self.contract.presence_order)))
        self._outputs = [s.name for s in self.contract.outputs]
        self._output_shapes = [(1, *s.shape) for s in self.contract.outputs]
        self._binding = (
            _DeviceOutputs(self.session, self._outputs) if self.provider in _GPU_PROVIDERS else None
        )
        self.warm_up(warm_up)

    def warm_up(self, runs: int) -> None:
        """Run the model `runs` times with no input present; a ContractError if it fails (an output of
        another size than its contract's, which only a run can tell, where the graph leaves it open)."""
        try:
            for _ in range(runs):
                self.infer({}, [0] * len(self.contract.presence_order))
        except Exception as exc:  # onnxruntime's own untyped errors, or outputs not of the contract
            raise ContractError(
                f"{self.path}: the model fails its warm-up run (no input present): {exc}"
            ) from exc

    def describe(self) -> str:
        """The one line that says what runs and, after a fallback, why (the node logs it as a WARNING)."""
        model = f"model {self.path} ({self.contract.fusion or 'fusion ?'})"
        if not self.fell_back:
            return f"{model}; providers wanted {' > '.join(self.plan.names)}; in use {self.provider}"
        first = self.plan.first_choice
        why = [s for s in self.plan.skipped if not s.endswith(_NOT_IN_BUILD)]
        if first in self.plan.names:  # asked for, and dropped by onnxruntime itself
            why.append(f"{first} (onnxruntime could not start it; its log above says why)")
        return (
            f"FELL BACK to {self.provider} (first choice {first}); not usable here: {'; '.join(why)}; {model}"
        )

    def feed(self, arrays: Mapping[str, np.ndarray], presence: Sequence[int]) -> dict[str, np.ndarray]:
        """Model inputs for one set, in the runtime's own buffers (valid until the next call): the
        present arrays copied in, zeros for the absent ones, the presence mask."""
        for name, buffer in self._inputs.items():
            array = arrays.get(name)
            if array is not None and (array.shape, array.dtype) != (buffer.shape[1:], buffer.dtype):
                raise ContractError(
                    f"set array {name!r} is {array.dtype} {array.shape}, the model takes float32 "
                    f"{buffer.shape[1:]}"
                )
        order = self.contract.presence_order
        # A set from another host is socket input: a mask of anything but len(order) bits is refused.
        if (
            not isinstance(presence, list | tuple)
            or len(presence) != len(order)
            or any(bit not in (0, 1) or isinstance(bit, float) for bit in presence)
        ):
            raise ContractError(f"presence mask {presence!r} needs {len(order)} bits 0 or 1 ({list(order)})")
        for name, buffer in self._inputs.items():
            array = arrays.get(name)
            buffer[0] = 0 if array is None else array
        self._presence[0] = presence
        return {**self._inputs, self.contract.presence: self._presence}

    def infer(self, arrays: Mapping[str, np.ndarray], presence: Sequence[int]) -> dict[str, np.ndarray]:
        """Run the model on one set's arrays; returns the outputs without the batch dimension."""
        inputs = self.feed(arrays, presence)
        if self._binding is not None:
            values = self._binding.run(inputs)
        else:
            values = self.session.run(self._outputs, inputs)
        # A size the graph leaves open is only known now: an output not of its contract's shape would
        # pass for what the contract names (classes, units), so the set is refused instead.
        for name, value, shape in zip(self._outputs, values, self._output_shapes, strict=True):
            if value.shape != shape:
                raise ContractError(
                    f"model output {name!r} came out {list(value.shape)}, its contract says {list(shape)}"
                )
        return {name: value[0] for name, value in zip(self._outputs, values, strict=True)}


def _aligned(shape: tuple[int, ...], alignment: int = 64) -> np.ndarray:
    """Float32 zeros of `shape` that start on an `alignment`-byte boundary (a cache line, the widest
    SIMD load)."""
    nbytes = math.prod(shape) * 4
    raw = np.zeros(nbytes + alignment, np.uint8)
    start = -raw.ctypes.data % alignment
    return raw[start : start + nbytes].view(np.float32).reshape(shape)


class _DeviceOutputs:
    """IO binding for GPU providers: outputs land on the device, then copy to host. Each run binds them
    afresh, so onnxruntime allocates them from its arena in the shape that run gives and a wrong shape
    reaches the contract check as on the CPU (outputs kept from an earlier run, or buffers of the
    contract's shape, make such a run raise, crashing the node)."""

    def __init__(self, session: Any, outputs: Sequence[str], device: str = "cuda") -> None:
        self.session = session
        self.outputs = outputs
        self.device = device
        self.binding = session.io_binding()

    def run(self, inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """The outputs of one run, in the order of `outputs`."""
        for name, array in inputs.items():
            self.binding.bind_cpu_input(name, np.ascontiguousarray(array))
        self.binding.clear_binding_outputs()
        for name in self.outputs:
            self.binding.bind_output(name, self.device, 0)
        self.session.run_with_iobinding(self.binding)
        return self.binding.copy_outputs_to_cpu()


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return (e / e.sum()).astype(np.float32)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-x))).astype(np.float32)


def result_sample(
    set_sample: Sample, outputs: Mapping[str, np.ndarray], contract: ModelContract, provider: str, seq: int
) -> Sample:
    """The result message of one set (PROTOCOL.md section 8): every output tensor by its name, plus what
    its kind decodes (probabilities), and the presence mask; the caller adds inference and publish stages."""
    arrays = {name: value.astype(np.float32, copy=False) for name, value in outputs.items()}
    for output in contract.outputs:
        if output.decoded:
            decode = _softmax if output.kind == "class_logits" else _sigmoid
            arrays[output.decoded] = decode(arrays[output.name])
    presence = set_sample.meta.get("presence", [0] * len(contract.presence_order))
    arrays[RESULT_PRESENCE] = np.asarray(presence, np.uint8)
    class_outputs = [o for o in contract.outputs if o.kind == "class_logits"]
    stages = set_sample.meta.get("stages")
    meta = {
        "outputs": {
            o.name: {"kind": o.kind, "classes": list(o.classes), "units": o.units} for o in contract.outputs
        },
        "inputs": list(contract.presence_order),
        "streams": set_sample.meta.get("streams", []),
        "modalities": contract.modalities,
        "stamps": set_sample.meta.get("stamps", {}),
        "provider": provider,
        "set_seq": set_sample.seq,
        "stages": dict(stages) if isinstance(stages, dict) else {CAPTURE: set_sample.stamp_ns},
    }
    if len(class_outputs) == 1:  # the class order of the one class output, as version 1 results had it
        meta["classes"] = list(class_outputs[0].classes)
    return Sample(RESULT_STREAM, RESULT_MODALITY, seq, set_sample.stamp_ns, arrays, "", meta)


class InferenceStage:
    """The inference step of the graph: a set message in, its result message out, counted.

    `clock` stamps inference_start and inference_end (the node passes the wall clock; an offline run may
    pass its own). `slowdown` > 1 is fault injection (``model.slowdown``): each run takes that many
    times as long, as the stage stamps and the node's loop see it.
    """

    def __init__(
        self, runtime: ModelRuntime, slowdown: float = 1.0, clock: Callable[[], int] = time.time_ns
    ) -> None:
        self.runtime = runtime
        self.slowdown = slowdown
        self.clock = clock
        self.results = 0
        self.bad_sets = 0  # sets the model cannot take (ContractError): counted, never fatal

    def run(self, set_sample: Sample) -> Sample | None:
        """The result of one set, numbered in order, stamped inference_start and inference_end; None (and
        counted) for a set whose arrays or presence mask do not fit the model."""
        start = self.clock()
        try:
            outputs = self.runtime.infer(set_sample.arrays, set_sample.meta.get("presence", ()))
        except ContractError as exc:
            if not self.bad_sets:  # the first one says why; the counter (bad_sets) says how many
                log.warning(
                    "refusing set %d (further ones only counted as bad_sets): %s", set_sample.seq, exc
                )
            self.bad_sets += 1
            return None
        if self.slowdown > 1:
            time.sleep((self.slowdown - 1) * (self.clock() - start) / 1e9)
        end = self.clock()
        runtime = self.runtime
        result = result_sample(set_sample, outputs, runtime.contract, runtime.provider, self.results)
        result.meta["stages"].update({INFERENCE_START: start, INFERENCE_END: end})
        self.results += 1
        return result

    def counters(self) -> dict[str, object]:
        return {"results": self.results, "bad_sets": self.bad_sets, "provider": self.runtime.provider}
