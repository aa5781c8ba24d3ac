"""Runtime: execution-provider choice, the contract check against the config, inference and results, the
inference stage, and node processes (fusion_pipeline.node.Node: loop, heartbeats, shutdown, exit 2)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from node_harness import Control, running, write_config
from pipeline_harness import DEMO_TEXT

from fusion_pipeline.config import Config, load_config, parse_config, tomllib
from fusion_pipeline.contract import CONTRACT_KEY, MODALITIES, ContractError, default_contract
from fusion_pipeline.inference import (
    PROVIDERS,
    InferenceStage,
    ModelRuntime,
    check_contract,
    choose_providers,
    load_contract,
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
        s.name: rng.standard_normal(s.shape).astype(np.float32)
        for s in default_contract().inputs
        if s.modality
    }


def test_absent_modalities_are_fed_zeros_and_present_ones_without_a_copy(runtime: ModelRuntime) -> None:
    arrays = _inputs()
    del arrays["camera"]
    feed = runtime.feed(arrays, [0, 1, 1, 1])
    assert not feed["camera"].any() and feed["camera"].shape == (1, 3, 96, 128)
    assert np.shares_memory(feed["lidar"], arrays["lidar"])
    np.testing.assert_array_equal(feed["presence"], [[0, 1, 1, 1]])


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
    with pytest.raises(ContractError, match="presence mask"):
        runtime.infer(_inputs(), [1, 1])


def test_result_message_follows_protocol_section_8(runtime: ModelRuntime) -> None:
    stages = {"capture": 10, "ingest_in": 11, "ingest_out": 12, "sync_in": 13, "sync_emit": 14}
    fused = Sample(
        "set/fused",
        "set",
        41,
        10,
        _inputs(),
        "",
        {"presence": [1, 1, 0, 1], "stamps": {"lidar/top": 10}, "stages": stages},
    )
    outputs = runtime.infer(fused.arrays, fused.meta["presence"])
    result = result_sample(fused, outputs, runtime.contract, runtime.provider, seq=7)
    assert (result.stream, result.modality, result.seq, result.stamp_ns) == ("result/fused", "result", 7, 10)
    probs = result.arrays["class_probs"]
    expected = np.exp(outputs["class_logits"]) / np.exp(outputs["class_logits"]).sum()
    np.testing.assert_allclose(probs, expected, rtol=1e-5)
    assert 0 < result.arrays["siren_prob"][0] < 1
    np.testing.assert_allclose(
        result.arrays["siren_prob"], 1 / (1 + np.exp(-outputs["siren_logit"])), rtol=1e-5
    )
    assert result.arrays["presence"].dtype == np.uint8 and list(result.arrays["presence"]) == [1, 1, 0, 1]
    assert result.meta["stages"] == stages and result.meta["stages"] is not stages
    assert result.meta["classes"] == list(runtime.contract.classes)
    assert result.meta["modalities"] == list(MODALITIES)
    assert result.meta["provider"] == CPU and result.meta["stamps"] == {"lidar/top": 10}
    assert result.meta["set_seq"] == 41


def test_the_inference_stage_turns_sets_into_numbered_stamped_results(runtime: ModelRuntime) -> None:
    stage = InferenceStage(runtime)
    stages = {"capture": 10, "sync_emit": 14}
    meta = {"presence": [1, 1, 1, 1], "stamps": {}, "stages": stages}
    fused = Sample("set/fused", "set", 3, 10, _inputs(), "", meta)
    wrong = {**_inputs(), "lidar": np.zeros((3, 32, 32), np.float32)}
    bad = Sample("set/fused", "set", 4, 11, wrong, "", meta)
    first, refused, second = stage.run(fused), stage.run(bad), stage.run(fused)
    assert refused is None and first is not None and second is not None
    assert (first.seq, second.seq, first.meta["set_seq"]) == (0, 1, 3)
    assert first.meta["stages"]["capture"] == 10 and "inference_start" not in stages
    assert first.meta["stages"]["inference_start"] <= first.meta["stages"]["inference_end"]
    np.testing.assert_array_equal(first.arrays["class_probs"], second.arrays["class_probs"])
    assert stage.counters() == {"results": 2, "bad_sets": 1, "provider": CPU}


# -- contract against the config ------------------------------------------------------------------------


def _model_with_contract(tmp_path: Path, edit) -> Path:
    """The shipped model with its contract JSON edited (the graph itself unchanged)."""
    model = onnx.load(str(model_path(load_config())))
    for prop in model.metadata_props:
        if prop.key == CONTRACT_KEY:
            raw = json.loads(prop.value)
            edit(raw)
            prop.value = json.dumps(raw)
    path = tmp_path / "edited.onnx"
    onnx.save(model, str(path))
    return path


def _camera_64(raw: dict) -> None:
    next(s for s in raw["inputs"] if s["name"] == "camera")["shape"] = [3, 64, 64]


def test_shipped_model_matches_the_demo_config() -> None:
    config = load_config()
    check_contract(load_contract(model_path(config)), config, model_path(config))


def test_shape_mismatch_names_the_stream_and_the_model(tmp_path: Path) -> None:
    path = _model_with_contract(tmp_path, _camera_64)
    with pytest.raises(ContractError) as err:
        check_contract(load_contract(path), load_config(), path)
    message = str(err.value)
    assert "streams[0] 'camera/front' (camera)" in message and str(path) in message
    assert "(3, 96, 128)" in message and "(3, 64, 64)" in message
    assert "lidar" not in message  # only what differs


def test_a_streamed_modality_the_model_lacks_is_refused(tmp_path: Path) -> None:
    def drop_audio(raw: dict) -> None:
        raw["inputs"] = [s for s in raw["inputs"] if s.get("modality") != "audio"]

    path = _model_with_contract(tmp_path, drop_audio)
    with pytest.raises(
        ContractError, match=r"'audio/roof' \(audio\) feeds inputs \['audio'\]; model .* no audio"
    ):
        check_contract(load_contract(path), load_config(), path)


def _run(tmp_path: Path, model: str, *command: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "bad.toml"
    config.write_text(DEMO_TEXT.replace('path = ""  ', f'path = "{model}"  ', 1))
    return subprocess.run(
        [sys.executable, *command, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )


def test_run_refuses_a_mismatched_model_before_starting_anything(tmp_path: Path) -> None:
    path = _model_with_contract(tmp_path, _camera_64)
    done = _run(tmp_path, str(path), "-m", "fusion_pipeline.cli", "run", "--duration", "5")
    assert done.returncode == 2
    assert "camera/front" in done.stderr and str(path) in done.stderr and "(3, 64, 64)" in done.stderr
    assert "[supervisor]" not in done.stderr  # refused in preflight: no node was started


def test_run_refuses_a_missing_model_naming_the_config_file_and_key(tmp_path: Path) -> None:
    # A relative path is read from the working directory (cwd=tmp_path): the message says where it looked.
    done = _run(tmp_path, "models/nope.onnx", "-m", "fusion_pipeline.cli", "run", "--duration", "5")
    assert done.returncode == 2
    expected = f"{tmp_path / 'bad.toml'}: model.path: no model file at {tmp_path / 'models' / 'nope.onnx'}"
    assert expected in done.stderr


def test_run_refuses_an_unwritable_summary_path_before_starting(tmp_path: Path) -> None:
    summary = tmp_path / "missing-dir" / "summary.json"
    done = _run(
        tmp_path,
        "",
        "-m",
        "fusion_pipeline.cli",
        "run",
        "--duration",
        "30",
        "--summary-json",
        str(summary),
    )
    assert done.returncode == 2 and "[supervisor]" not in done.stderr
    assert f"--summary-json {summary}: directory {summary.parent} does not exist" in done.stderr


def test_a_node_that_cannot_bind_its_endpoint_exits_2_with_one_line(tmp_path: Path) -> None:
    # An unresolvable host passes the config's syntax check; the driver must say so, not crash with a
    # traceback (the supervisor then restarts it with backoff).
    config = tmp_path / "unresolvable.toml"
    text = DEMO_TEXT.replace("ipc://{run_dir}/sensor-radar_front.sock", "tcp://no-such-host.invalid:5555", 1)
    config.write_text(text.replace("insecure = false", "insecure = true", 1))
    command = ["-m", "nodes.sensor_sim", "--config", str(config), "--run-dir", str(tmp_path)]
    done = subprocess.run(
        [sys.executable, *command, "--stream", "radar/front"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2, done.stderr
    assert "stopped: EndpointError: cannot bind 'tcp://no-such-host.invalid:5555'" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_node_given_an_unknown_stream_exits_2_naming_the_streams(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "nodes.ingest", "--run-dir", str(tmp_path), "--stream", "nope"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "no stream 'nope' in the config (streams: ['camera/front', 'lidar/top'" in done.stderr


def test_inference_node_refuses_a_mismatched_model(tmp_path: Path) -> None:
    path = _model_with_contract(tmp_path, _camera_64)
    done = _run(tmp_path, str(path), "-m", "nodes.inference", "--run-dir", str(tmp_path))
    assert done.returncode == 2
    assert "stopped: ContractError" in done.stderr and "(3, 64, 64)" in done.stderr


def test_inference_node_start_logs_one_provider_line_and_no_onnxruntime_errors(tmp_path: Path) -> None:
    """On a machine without CUDA libraries (or with them), the node asks only for providers whose libraries
    load: onnxruntime prints none of its own load errors, and one line says what runs."""
    config = tmp_path / "demo.toml"
    config.write_text(DEMO_TEXT)
    run_dir = tmp_path / "run"
    run_dir.mkdir(mode=0o700)
    log = tmp_path / "inference.log"
    with log.open("w") as out:
        node = subprocess.Popen(
            [sys.executable, "-m", "nodes.inference", "--config", str(config), "--run-dir", str(run_dir)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    provider_line = re.compile(r"(in use|FELL BACK to) (\w+ExecutionProvider)")
    try:
        deadline = time.monotonic() + 60
        while not provider_line.search(log.read_text()) and node.poll() is None:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
    finally:
        node.terminate()
        node.wait(timeout=10)
    lines = log.read_text().splitlines()
    assert [line for line in lines if re.search(r"\[[VIWEF]:onnxruntime:", line)] == [], lines
    (line,) = [line for line in lines if provider_line.search(line)]
    in_use = provider_line.search(line).group(2)  # type: ignore[union-attr]
    assert sum(in_use in other for other in lines) == 1, lines
    if in_use != CUDA and CUDA in ort.get_available_providers():
        assert f"FELL BACK to {in_use}" in line and "CUDAExecutionProvider" in line  # says why


NODE_SCRIPT = """
import sys, time
from fusion_pipeline.node import Node, run_node

def main() -> int:
    with Node("probe", sys.argv[1:]) as node:
        node.publisher(node.endpoint("ipc://{run_dir}/probe.sock"), "probe", "probe")
        passes = 0

        def counters() -> dict:
            return {"passes": passes, "running": node.running}

        for _ in node.loop(counters):
            passes += 1
            time.sleep(0.01)
    return 0

run_node(main)
"""


def test_a_node_loops_beating_until_sigterm_then_sends_its_last_counters_and_closes(tmp_path: Path) -> None:
    config = write_config(tmp_path / "probe.toml", ["lidar"])
    control = Control(tmp_path)
    command = [sys.executable, "-c", NODE_SCRIPT, "--config", str(config), "--run-dir", str(tmp_path)]
    node = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    try:
        with running(node):
            control.wait_for("probe", lambda c: c["passes"] > 0, timeout_s=30)
            assert (tmp_path / "probe.sock").exists()
            node.terminate()
            assert node.wait(timeout=10) == 0, node.stderr.read()  # type: ignore[union-attr]
        control.poll(100)
        assert control.latest["probe"]["running"] is False  # the last beat: sent at shutdown, after the stop
        assert control.latest["probe"]["passes"] > 0
        assert not (tmp_path / "probe.sock").exists()  # the publisher was closed, its ipc file removed
    finally:
        control.close()


def test_cpu_only_requirements_are_the_dependencies_with_the_cpu_onnxruntime() -> None:
    """README's CPU-only install (`pip install -r requirements-cpu.txt && pip install --no-deps -e .`)
    must install what pyproject.toml's dependencies would, bar the GPU wheel."""
    root = Path(__file__).resolve().parents[1]
    dependencies = tomllib.loads((root / "pyproject.toml").read_text())["project"]["dependencies"]
    lines = (root / "requirements-cpu.txt").read_text().splitlines()
    cpu = [line for line in lines if line and not line.startswith("#")]
    gpu = [d for d in dependencies if d.startswith("onnxruntime-gpu")]
    assert len(gpu) == 1
    assert cpu == [gpu[0].replace("onnxruntime-gpu", "onnxruntime") if d in gpu else d for d in dependencies]
