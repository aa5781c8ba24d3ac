"""Inference: execution-provider choice, binding the config to the model's contract, inference and results
(every output, decoded by its kind), the inference stage. Nodes and `run` as processes:
tests/process/test_runtime.py."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from edited_model import (
    camera_64,
    camera_64_graph,
    camera_sum_model,
    classes_by_data,
    four_classes,
    model_with_contract,
)
from paths import ROOT
from pipeline_harness import DEMO_TEXT

from fusion_pipeline.config import Config, load_config, parse_config, tomllib
from fusion_pipeline.contract import ModelContract, OutputSpec, default_contract
from fusion_pipeline.errors import ContractError
from fusion_pipeline.inference import (
    PROVIDERS,
    InferenceStage,
    ModelRuntime,
    _DeviceOutputs,
    choose_providers,
    engine_cache_dir,
    hash_model,
    load_bindings,
    model_files,
    model_path,
    result_sample,
    wants_tensorrt,
)
from fusion_pipeline.transport import Sample

TRT, CUDA, CPU = PROVIDERS["tensorrt"], PROVIDERS["cuda"], PROVIDERS["cpu"]
ALL = [TRT, CUDA, CPU]
CACHE = Path("/cache/trt")


def _config(providers: list[str]) -> Config:
    """The demo config with another model.providers list."""
    assert 'providers = ["auto"]' in DEMO_TEXT
    return parse_config(DEMO_TEXT.replace('providers = ["auto"]', f"providers = {json.dumps(providers)}", 1))


# -- provider choice ------------------------------------------------------------------------------------


def test_auto_prefers_cuda_then_cpu_and_tensorrt_only_when_opted_in() -> None:
    plan = choose_providers(["auto"], ALL, tensorrt=False, tf32=True, engine_cache=CACHE)
    assert plan.names == [CUDA, CPU]
    plan = choose_providers(["auto"], ALL, tensorrt=True, tf32=True, engine_cache=CACHE)
    assert plan.names == [TRT, CUDA, CPU]
    trt_options = dict(plan.providers)[TRT]
    assert trt_options["trt_engine_cache_enable"] == "True"
    assert trt_options["trt_engine_cache_path"] == str(CACHE)


def test_tf32_option_reaches_cuda() -> None:
    on = choose_providers(["cuda"], ALL, tensorrt=False, tf32=True, engine_cache=CACHE)
    off = choose_providers(["cuda"], ALL, tensorrt=False, tf32=False, engine_cache=CACHE)
    assert dict(on.providers)[CUDA]["use_tf32"] == "1"
    assert dict(off.providers)[CUDA]["use_tf32"] == "0"


def test_providers_missing_from_the_build_are_skipped_and_cpu_is_always_last() -> None:
    plan = choose_providers(["auto"], [CPU], tensorrt=True, tf32=True, engine_cache=CACHE)
    assert plan.names == [CPU]
    assert [s.split()[0] for s in plan.skipped] == [TRT, CUDA]
    plan = choose_providers(["cuda"], [CUDA, CPU], tensorrt=False, tf32=True, engine_cache=CACHE)
    assert plan.names == [CUDA, CPU]


def test_providers_whose_libraries_do_not_load_are_skipped_with_the_reason() -> None:
    def probe(provider: str) -> str | None:
        return "cannot load libcuda.so.1" if provider == CUDA else None

    plan = choose_providers(["auto"], ALL, tensorrt=True, tf32=True, engine_cache=CACHE, probe=probe)
    assert plan.names == [TRT, CPU]
    assert plan.skipped == (f"{CUDA} (cannot load libcuda.so.1)",)
    assert plan.first_choice == TRT
    # A CPU-only onnxruntime build (the `onnxruntime` wheel): the CPU is the first choice, no fallback.
    cpu_build = choose_providers(["auto"], [CPU], tensorrt=False, tf32=True, engine_cache=CACHE, probe=probe)
    assert (cpu_build.names, cpu_build.first_choice) == ([CPU], CPU)


def test_explicit_order_is_kept_without_duplicates() -> None:
    plan = choose_providers(["cpu", "cuda", "auto"], ALL, tensorrt=False, tf32=True, engine_cache=CACHE)
    assert plan.names == [CPU, CUDA]
    plan = choose_providers(["tensorrt", "cpu"], ALL, tensorrt=False, tf32=True, engine_cache=CACHE)
    assert plan.names == [TRT, CPU]  # naming tensorrt is opting in


def test_tensorrt_is_wanted_when_named_or_opted_into_under_auto() -> None:
    model = load_config().model
    assert not wants_tensorrt(model)  # the demo: auto without the opt-in
    assert wants_tensorrt(model.model_copy(update={"tensorrt": True}))
    assert wants_tensorrt(model.model_copy(update={"providers": ["tensorrt", "cpu"]}))
    assert not wants_tensorrt(model.model_copy(update={"tensorrt": True, "providers": ["cuda"]}))


def test_unknown_provider_is_refused() -> None:
    with pytest.raises(ContractError, match="unknown provider 'rocm'"):
        choose_providers(["rocm"], ALL, tensorrt=False, tf32=True, engine_cache=CACHE)


def test_runtime_reports_the_provider_onnxruntime_actually_uses() -> None:
    runtime = ModelRuntime(_config(providers=["auto"]), warm_up=0)
    in_use = runtime.session.get_providers()
    assert runtime.provider == in_use[0]
    assert runtime.plan.first_choice == (CUDA if CUDA in ort.get_available_providers() else CPU)
    # Without usable CUDA libraries the plan skips CUDA (saying why), or onnxruntime drops it while
    # creating the session: either is a fallback.
    assert runtime.fell_back == (runtime.provider != runtime.plan.first_choice)
    if CUDA not in in_use:
        assert runtime.provider == CPU
    if CUDA not in runtime.plan.names and CUDA in ort.get_available_providers():
        assert any(
            s.startswith(f"{CUDA} (cannot load libonnxruntime_providers_cuda.so: ")
            for s in runtime.plan.skipped
        )
    cpu_only = ModelRuntime(_config(providers=["cpu"]), warm_up=0)
    assert (cpu_only.provider, cpu_only.fell_back) == (CPU, False)


# -- inference and results ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def runtime() -> ModelRuntime:
    return ModelRuntime(_config(providers=["cpu"]))


def _inputs(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        name: rng.standard_normal(shape).astype(np.float32)
        for spec in default_contract().inputs
        for name, shape in spec.tensors.items()
    }


STREAMS = ["camera/front", "lidar/top", "radar/front", "audio/roof"]  # the stream behind each presence bit


def test_absent_modalities_are_fed_zeros_and_present_ones_from_aligned_buffers(runtime: ModelRuntime) -> None:
    arrays = _inputs()
    runtime.feed(arrays, [1, 1, 1, 1])  # the camera's buffer then holds a frame
    del arrays["camera"]
    feed = runtime.feed(arrays, [0, 1, 1, 1])
    assert not feed["camera"].any() and feed["camera"].shape == (1, 3, 96, 128)
    np.testing.assert_array_equal(feed["lidar"][0], arrays["lidar"])
    np.testing.assert_array_equal(feed["presence"], [[0, 1, 1, 1]])
    assert all(a.ctypes.data % 64 == 0 and a.dtype == np.float32 for a in feed.values())


def _at(array: np.ndarray, offset: int) -> np.ndarray:
    """A copy of `array` that starts `offset` bytes past a 64-byte boundary."""
    raw = np.zeros(array.nbytes + 128, np.uint8)
    start = -raw.ctypes.data % 64 + offset
    copy = raw[start : start + array.nbytes].view(array.dtype).reshape(array.shape)
    copy[...] = array
    return copy


def test_a_set_gives_the_same_results_wherever_its_arrays_lie(tmp_path: Path) -> None:
    """A socket frame, a log record or a fresh array: a set's arrays start anywhere in memory, and the
    results of live, replayed and offline runs must still be the same to the bit (a model summing its
    camera input gave other last bits at 4 and 8 bytes past a cache line)."""
    runtime = ModelRuntime(_with_model(camera_sum_model(tmp_path)))
    arrays = _inputs(seed=5)
    results = [
        runtime.infer({k: _at(v, offset) for k, v in arrays.items()}, [1, 1, 1, 1])
        for offset in (0, 4, 8, 12)
    ]
    for result in results[1:]:
        assert all(np.array_equal(result[k], results[0][k]) for k in result)


def test_inference_is_deterministic_and_uses_the_presence_mask(runtime: ModelRuntime) -> None:
    arrays = _inputs()
    a = runtime.infer(arrays, [1, 1, 1, 1])
    b = runtime.infer(arrays, [1, 1, 1, 1])
    c = runtime.infer(arrays, [0, 1, 1, 1])
    assert {k: v.shape for k, v in a.items()} == {
        "class_logits": (5,),
        "position": (2,),
        "velocity": (1,),
        "siren_logit": (1,),
    }
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])
    assert not np.allclose(a["class_logits"], c["class_logits"])


def test_a_set_with_wrong_shapes_or_mask_is_refused(runtime: ModelRuntime) -> None:
    arrays = _inputs()
    arrays["lidar"] = np.zeros((3, 32, 32), np.float32)
    with pytest.raises(ContractError, match=r"'lidar' is float32 \(3, 32, 32\), the model takes float32"):
        runtime.infer(arrays, [1, 1, 1, 1])
    arrays["lidar"] = np.zeros((3, 64, 64), np.float64)
    with pytest.raises(ContractError, match="'lidar' is float64"):
        runtime.infer(arrays, [1, 1, 1, 1])
    # A set from another host is socket input: a mask that is not 0/1 bits is refused, never a crash.
    for mask in ([1, 1], "xxxx", 5, [300] * 4, [-1] * 4, [[1]] * 4, [0.5] * 4, None):
        with pytest.raises(ContractError, match="presence mask"):
            runtime.infer(_inputs(), mask)  # type: ignore[arg-type]


def test_result_message_follows_protocol_section_8(runtime: ModelRuntime) -> None:
    stages = {"capture": 10, "ingest_in": 11, "ingest_out": 12, "sync_in": 13, "sync_emit": 14}
    fused = Sample(
        "set/fused",
        "set",
        41,
        10,
        _inputs(),
        "",
        {"presence": [1, 1, 0, 1], "stamps": {"lidar/top": 10}, "stages": stages, "streams": STREAMS},
    )
    outputs = runtime.infer(fused.arrays, fused.meta["presence"])
    result = result_sample(fused, outputs, runtime.contract, runtime.provider, seq=7)
    assert (result.stream, result.modality, result.seq, result.stamp_ns) == ("result/fused", "result", 7, 10)
    assert set(result.arrays) == {*outputs, "class_probs", "siren_prob", "presence"}
    for name, value in outputs.items():  # every output tensor as the model gave it
        np.testing.assert_array_equal(result.arrays[name], value)
    probs = result.arrays["class_probs"]
    expected = np.exp(outputs["class_logits"]) / np.exp(outputs["class_logits"]).sum()
    np.testing.assert_allclose(probs, expected, rtol=1e-5)
    assert 0 < result.arrays["siren_prob"][0] < 1
    np.testing.assert_allclose(
        result.arrays["siren_prob"], 1 / (1 + np.exp(-outputs["siren_logit"])), rtol=1e-5
    )
    assert result.arrays["presence"].dtype == np.uint8 and list(result.arrays["presence"]) == [1, 1, 0, 1]
    assert result.meta["stages"] == stages and result.meta["stages"] is not stages
    assert result.meta["classes"] == ["none", "car", "pedestrian", "cyclist", "emergency"]
    assert result.meta["outputs"] == {
        "class_logits": {"kind": "class_logits", "classes": result.meta["classes"], "units": ""},
        "position": {"kind": "regression", "classes": [], "units": "m"},
        "velocity": {"kind": "regression", "classes": [], "units": "m/s"},
        "siren_logit": {"kind": "logit", "classes": [], "units": ""},
    }
    assert result.meta["modalities"] == result.meta["inputs"] == ["camera", "lidar", "radar", "audio"]
    assert result.meta["streams"] == STREAMS
    assert result.meta["provider"] == CPU and result.meta["stamps"] == {"lidar/top": 10}
    assert result.meta["set_seq"] == 41


def test_the_inference_stage_turns_sets_into_numbered_stamped_results(
    runtime: ModelRuntime, caplog: pytest.LogCaptureFixture
) -> None:
    stage = InferenceStage(runtime)
    stages = {"capture": 10, "sync_emit": 14}
    meta = {"presence": [1, 1, 1, 1], "stamps": {}, "stages": stages}
    fused = Sample("set/fused", "set", 3, 10, _inputs(), "", meta)
    wrong = {**_inputs(), "lidar": np.zeros((3, 32, 32), np.float32)}
    bad = Sample("set/fused", "set", 4, 11, wrong, "", meta)
    first, refused, second = stage.run(fused), stage.run(bad), stage.run(fused)
    assert refused is None and first is not None and second is not None
    stage.run(bad)  # a model that refuses every set said why once, at WARNING (it was at DEBUG only)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "refusing set 4" in warnings[0] and "lidar" in warnings[0]
    assert (first.seq, second.seq, first.meta["set_seq"]) == (0, 1, 3)
    assert first.meta["stages"]["capture"] == 10 and "inference_start" not in stages
    assert first.meta["stages"]["inference_start"] <= first.meta["stages"]["inference_end"]
    np.testing.assert_array_equal(first.arrays["class_probs"], second.arrays["class_probs"])
    assert stage.counters() == {"results": 2, "bad_sets": 2, "provider": CPU}


def test_the_inference_stage_stamps_with_the_clock_it_is_given(runtime: ModelRuntime) -> None:
    ticks = iter(range(1000, 1010))
    stage = InferenceStage(runtime, clock=lambda: next(ticks))
    meta = {"presence": [1, 1, 1, 1], "stamps": {}, "stages": {"capture": 10}}
    result = stage.run(Sample("set/fused", "set", 0, 10, _inputs(), "", meta))
    assert result is not None
    assert (result.meta["stages"]["inference_start"], result.meta["stages"]["inference_end"]) == (1000, 1001)


def _user_contract(*outputs: OutputSpec) -> ModelContract:
    lidar = default_contract().input("lidar")
    return ModelContract((lidar,), outputs, presence_order=("lidar",))


def test_a_result_carries_every_output_and_what_its_kind_decodes() -> None:
    contract = _user_contract(
        OutputSpec("intent_logits", (3,), "class_logits", classes=("stop", "go", "turn")),
        OutputSpec("distance", (1,), "regression", units="m"),
        OutputSpec("blocked_logit", (1,), "logit"),
        OutputSpec("embedding", (4,), "opaque"),
    )
    outputs = {
        "intent_logits": np.array([0.0, 1.0, 2.0], np.float32),
        "distance": np.array([12.5], np.float32),
        "blocked_logit": np.array([0.0], np.float32),
        "embedding": np.arange(4, dtype=np.float32),
    }
    meta = {"presence": [1], "streams": ["lidar/rear"], "stamps": {"lidar/rear": 5}}
    result = result_sample(Sample("set/fused", "set", 2, 5, {}, "", meta), outputs, contract, CPU, seq=0)
    assert set(result.arrays) == {*outputs, "intent_probs", "blocked_prob", "presence"}
    for name, value in outputs.items():
        np.testing.assert_array_equal(result.arrays[name], value)
    np.testing.assert_allclose(
        result.arrays["intent_probs"], np.exp([0, 1, 2]) / np.exp([0, 1, 2]).sum(), rtol=1e-6
    )
    np.testing.assert_array_equal(result.arrays["blocked_prob"], [0.5])
    assert result.meta["classes"] == ["stop", "go", "turn"]  # the one class output's names
    assert result.meta["outputs"]["distance"] == {"kind": "regression", "classes": [], "units": "m"}
    assert result.meta["inputs"] == result.meta["modalities"] == ["lidar"]
    assert result.meta["streams"] == ["lidar/rear"]


def test_a_result_of_two_class_outputs_names_their_classes_per_output_only() -> None:
    contract = _user_contract(
        OutputSpec("intent_logits", (2,), "class_logits", classes=("stop", "go")),
        OutputSpec("weather_logits", (2,), "class_logits", classes=("dry", "wet")),
    )
    outputs = {"intent_logits": np.zeros(2, np.float32), "weather_logits": np.ones(2, np.float32)}
    result = result_sample(
        Sample("set/fused", "set", 0, 5, {}, "", {"presence": [1]}), outputs, contract, CPU, 0
    )
    assert "classes" not in result.meta
    assert result.meta["outputs"]["weather_logits"]["classes"] == ["dry", "wet"]
    np.testing.assert_array_equal(result.arrays["weather_probs"], [0.5, 0.5])


# -- the config bound to the model's contract -----------------------------------------------------------


def _with_model(path: Path) -> Config:
    """The demo config running the model at `path`."""
    config = load_config()
    return config.model_copy(update={"model": config.model.model_copy(update={"path": str(path)})})


def test_the_shipped_model_binds_the_demo_streams() -> None:
    bindings = load_bindings(load_config())
    assert {name: (b.input.name, b.bit) for name, b in bindings.by_stream.items()} == {
        "camera/front": ("camera", 0),
        "lidar/top": ("lidar", 1),
        "radar/front": ("radar", 2),
        "audio/roof": ("audio", 3),
    }
    assert bindings.contract.tensors == default_contract().tensors


def test_a_shape_the_front_end_cannot_give_names_the_model_its_input_and_both_shapes(
    tmp_path: Path,
) -> None:
    path = model_with_contract(tmp_path, camera_64, camera_64_graph)
    with pytest.raises(ContractError) as err:
        load_bindings(_with_model(path))
    assert str(err.value) == (
        f"{path}: model contract is invalid:\n"
        "  inputs.camera.preprocess: input 'camera': the model wants shape (3, 64, 64), its preprocess "
        "parameters give (3, 96, 128)"
    )


def test_a_stream_bound_to_an_input_the_model_lacks_is_refused() -> None:
    config = load_config()
    streams = [
        s.model_copy(update={"input": "siren"}) if s.modality == "audio" else s for s in config.streams
    ]
    with pytest.raises(ContractError) as err:
        load_bindings(config.model_copy(update={"streams": streams}))
    assert (
        "streams[3].input: 'siren' is not an input of the model "
        "(inputs: ['camera', 'lidar', 'radar', 'audio'])" in str(err.value)
    )


def _rename(key: str, old: str, new: str) -> Callable[[dict], None]:
    """A contract edit: the entry of raw[key] named `old` (or the presence input) called `new`."""

    def edit(raw: dict) -> None:
        if key == "presence":
            raw["presence"] = new
            return
        next(s for s in raw[key] if s["name"] == old)["name"] = new

    return edit


def _presence_as_double(model: onnx.ModelProto) -> None:
    """The graph's presence input declared float64, cast to float32 inside (another exporter's fp64)."""

    def use_cast(graph: onnx.GraphProto) -> None:  # subgraphs (If branches) read it by name too
        for node in graph.node:
            node.input[:] = ["presence_f32" if name == "presence" else name for name in node.input]
            for attribute in node.attribute:
                for subgraph in [attribute.g, *attribute.graphs]:
                    use_cast(subgraph)

    use_cast(model.graph)
    next(
        i for i in model.graph.input if i.name == "presence"
    ).type.tensor_type.elem_type = onnx.TensorProto.DOUBLE
    cast = onnx.helper.make_node("Cast", ["presence"], ["presence_f32"], to=onnx.TensorProto.FLOAT)
    model.graph.node.insert(0, cast)


def _batch_of_4(model: onnx.ModelProto) -> None:
    """The graph's presence input exported with a fixed batch of 4 (a tracer's example batch)."""
    next(i for i in model.graph.input if i.name == "presence").type.tensor_type.shape.dim[0].dim_value = 4


def _outputs_declared_batch_2(model: onnx.ModelProto) -> None:
    """Every graph output declared with a batch of 2, which onnxruntime does not hold them to."""
    for output in model.graph.output:
        output.type.tensor_type.shape.dim[0].dim_value = 2


def _extra_output(model: onnx.ModelProto) -> None:
    """An output the contract does not declare (an auxiliary head left in the export): never read."""
    model.graph.node.append(onnx.helper.make_node("Identity", ["class_logits"], ["aux"]))
    model.graph.output.append(onnx.helper.make_tensor_value_info("aux", onnx.TensorProto.FLOAT, ["batch", 5]))


@pytest.mark.parametrize(
    ("edit", "edit_graph", "refused"),
    [
        (
            _rename("presence", "presence", "avail"),
            None,
            "graph inputs ['presence'] are not in its contract, so nothing would feed them (its contract's "
            "['avail'] are not graph inputs)",
        ),
        (lambda raw: None, _extra_output, "graph outputs ['aux'] are not in its contract, so nothing would"),
        (_rename("outputs", "position", "range"), None, "contract output 'range' is not a graph output"),
        (
            lambda raw: None,
            _presence_as_double,
            "graph input 'presence' is tensor(double); the pipeline's inputs",
        ),
        (
            four_classes,
            None,
            "graph output 'class_logits' has shape ['batch', 5] (batch first), its contract says [4]",
        ),
        (
            lambda raw: None,
            _batch_of_4,
            "graph input 'presence' has a fixed batch of 4 (its first dimension)",
        ),
    ],
    ids=["unfed input", "unread output", "missing output", "float64 input", "output size", "fixed batch"],
)
def test_a_graph_that_differs_from_its_own_contract_is_refused_when_read(
    tmp_path: Path,
    edit: Callable[[dict], None],
    edit_graph: Callable[[onnx.ModelProto], None] | None,
    refused: str,
) -> None:
    """run, replay and every node read the contract first: such a model never starts (it crash-looped the
    inference node, or ran with results that did not match their class names)."""
    path = model_with_contract(tmp_path, edit, edit_graph)
    with pytest.raises(ContractError, match=re.escape(f"{path}: {refused}")):
        load_bindings(_with_model(path))


def test_an_output_of_another_size_than_its_contract_refuses_the_model_at_start(tmp_path: Path) -> None:
    """A size the graph leaves open is only known when it runs: 5 class logits under a contract of 4
    classes ran silently, the results' probabilities of 5 named by 4 classes."""
    path = model_with_contract(tmp_path, four_classes, classes_by_data(5))
    load_bindings(_with_model(path))  # the graph's declarations fit the contract
    with pytest.raises(ContractError, match=re.escape(f"{path}: the model fails its warm-up run")) as refused:
        ModelRuntime(_with_model(path))
    assert "model output 'class_logits' came out [1, 5], its contract says [1, 4]" in str(refused.value)


def test_an_output_declared_with_a_fixed_batch_runs_at_the_batch_it_gives(tmp_path: Path) -> None:
    """Only an input's fixed batch refuses a model: an output's declared batch binds nothing (the model
    below runs at batch 1 and was refused)."""
    path = model_with_contract(tmp_path, lambda raw: None, _outputs_declared_batch_2)
    result = InferenceStage(ModelRuntime(_with_model(path))).run(
        Sample(
            "set/fused", "set", 0, 10, _inputs(), "", {"presence": [1, 1, 1, 1], "stamps": {}, "stages": {}}
        )
    )
    assert result is not None and result.arrays["class_logits"].shape == default_contract().outputs[0].shape


@pytest.mark.parametrize("outputs", ["session", "io binding"])
def test_an_output_of_another_size_in_a_later_run_is_a_counted_bad_set(tmp_path: Path, outputs: str) -> None:
    """The warm-up fits the contract, a later set does not: that set is refused and counted, and the next
    one runs. GPU providers bind their outputs on the device; the same binding on the CPU device runs
    onnxruntime's own IO binding here (bound buffers of the contract's shape raised, crashing the node)."""
    path = model_with_contract(tmp_path, four_classes, classes_by_data(4))
    runtime = ModelRuntime(_with_model(path))
    if outputs == "io binding":
        runtime._binding = _DeviceOutputs(runtime.session, runtime._outputs, device="cpu")
    stage = InferenceStage(runtime)
    meta = {"presence": [0, 0, 0, 0], "stamps": {}, "stages": {}}
    one_present = {**meta, "presence": [1, 0, 0, 0]}
    camera = {"camera": _inputs()["camera"]}
    first = stage.run(Sample("set/fused", "set", 0, 10, {}, "", meta))
    refused = stage.run(Sample("set/fused", "set", 1, 11, camera, "", one_present))
    second = stage.run(Sample("set/fused", "set", 2, 12, {}, "", meta))
    assert first is not None and refused is None and second is not None
    assert first.arrays["class_logits"].shape == (4,)
    assert stage.counters()["bad_sets"] == 1 and stage.counters()["results"] == 2


def test_cpu_only_requirements_are_the_dependencies_with_the_cpu_onnxruntime() -> None:
    """README's CPU-only install (`pip install -r requirements-cpu.txt && pip install --no-deps -e .`)
    must install what pyproject.toml's dependencies would, bar the GPU wheel."""
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    lines = (ROOT / "requirements-cpu.txt").read_text().splitlines()
    cpu = [line for line in lines if line and not line.startswith("#")]
    gpu = [d for d in dependencies if d.startswith("onnxruntime-gpu")]
    assert len(gpu) == 1
    assert cpu == [gpu[0].replace("onnxruntime-gpu", "onnxruntime") if d in gpu else d for d in dependencies]


# -- a model's files ------------------------------------------------------------------------------------


def test_a_model_with_external_weights_is_its_files_and_hashes_with_its_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A model saved with its weights beside it (ONNX external data) is several files: one retrained
    in place, its graph file unchanged, kept a batch's results and TensorRT's engines of the old weights."""
    shipped = model_path(load_config(None))
    path = tmp_path / "model.onnx"
    # A file per tensor, the branches of the fallback's `If` included: the folder then holds exactly the
    # files the model names.
    onnx.save_model(onnx.load(shipped), path, save_as_external_data=True, all_tensors_to_one_file=False)
    files = model_files(path)
    assert files[0] == path and len(files) > 10
    assert set(files) == set(tmp_path.iterdir())
    assert model_files(shipped) == [shipped]
    # A model of one file hashes as its bytes: the digests of batches an earlier version made stay valid.
    assert hash_model(shipped, hashlib.sha256()).digest() == hashlib.sha256(shipped.read_bytes()).digest()
    monkeypatch.setenv("FUSION_PIPELINE_CACHE", str(tmp_path / "cache"))
    before, engines = hash_model(path, hashlib.sha256()).digest(), engine_cache_dir(path)
    assert engines.parent == engine_cache_dir() == tmp_path / "cache" / "tensorrt"
    weights = max(files[1:], key=lambda f: f.stat().st_size)
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1  # retrained: one weight's last bits
    weights.write_bytes(bytes(data))
    assert hash_model(path, hashlib.sha256()).digest() != before
    assert engine_cache_dir(path) != engines
    weights.unlink()
    with pytest.raises(ContractError, match=f"{path}: cannot read {weights}: No such file"):
        hash_model(path, hashlib.sha256())
    with pytest.raises(ContractError, match="not a loadable ONNX model"):
        model_files(weights.with_name("garbage.onnx"))
