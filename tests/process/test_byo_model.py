"""Bring your own model (docs/MODEL.md), end to end through real processes: `python
examples/byo_model.py byo.onnx` exports a plain torch model, `fusion-pipeline run -c examples/byo.toml`
runs it. Ingest prepares each stream exactly as the preprocessing functions do with the contract's
parameters, on the payload the driver sent; the results carry the model's own outputs, which are what
ONNX Runtime gives for the set they came from."""

from __future__ import annotations

import functools
import subprocess
import sys
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import zmq
from paths import ROOT
from pipeline_harness import pipeline, presence

from fusion_pipeline.config import Config, parse_config
from fusion_pipeline.contract import ModelContract
from fusion_pipeline.inference import load_contract
from fusion_pipeline.preprocess import CameraParams, LidarParams, preprocess_camera, preprocess_lidar
from fusion_pipeline.protocol import RESULT_STREAM, SET_STREAM
from fusion_pipeline.transport import Sample, Subscriber

EXAMPLE = ROOT / "examples" / "byo_model.py"
CONFIG = ROOT / "examples" / "byo.toml"
MATCHED = 3  # ingest samples per stream compared with the driver's payload
RESULTS = 5  # results with every sensor present

#: modality -> the preprocessing function and its parameters class, called directly.
PREPROCESS: dict[str, tuple[Callable[..., np.ndarray], type[CameraParams] | type[LidarParams]]] = {
    "camera": (preprocess_camera, CameraParams),
    "lidar": (preprocess_lidar, LidarParams),
}
PAYLOAD = {"camera": "image", "lidar": "points"}  # the driver's array (PROTOCOL.md section 5)


def byo_text(run_dir: Path) -> str:
    """examples/byo.toml with a run dir the test can find, any free metrics port, and the CPU provider
    (the last test compares the results with ONNX Runtime on the CPU)."""
    text = CONFIG.read_text()
    for old, new in (
        ('run_dir = ""', f'run_dir = "{run_dir}"'),
        ('address = "127.0.0.1:9464"', 'address = "127.0.0.1:0"'),
        ('providers = ["auto"]', 'providers = ["cpu"]'),
    ):
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    return text


@dataclass
class Traffic:
    """What the run published, as a subscriber saw it: the drivers' raw payloads by stamp (the newest
    few per stream), ingest's samples, and sets and results."""

    raw: dict[str, deque[Sample]] = field(default_factory=lambda: defaultdict(lambda: deque(maxlen=40)))
    prepared: dict[str, list[Sample]] = field(default_factory=lambda: defaultdict(list))
    sets: dict[int, Sample] = field(default_factory=dict)
    results: list[Sample] = field(default_factory=list)
    matched: dict[str, list[tuple[Sample, Sample]]] = field(default_factory=lambda: defaultdict(list))

    def match(self, stream: str) -> None:
        """Pair ingest's samples with the driver message of the same stamp (offset_ms is 0)."""
        raw = {s.stamp_ns: s for s in self.raw[stream]}
        waiting = []
        for sample in self.prepared[stream]:
            if sample.stamp_ns in raw:
                self.matched[stream].append((raw[sample.stamp_ns], sample))
            elif sample.stamp_ns >= min(raw, default=sample.stamp_ns):  # its raw message may come next
                waiting.append(sample)
        self.prepared[stream] = waiting

    def complete(self, streams: list[str]) -> bool:
        full = [r for r in self.results if sum(presence(r)) == len(streams)]
        return (
            all(len(self.matched[s]) >= MATCHED for s in streams)
            and len(full) >= RESULTS
            and any(r.meta["set_seq"] in self.sets for r in full)
        )


@dataclass
class ByoRun:
    config: Config
    contract: ModelContract
    model: Path
    traffic: Traffic


@pytest.fixture(scope="module")
def byo_run(tmp_path_factory: pytest.TempPathFactory) -> ByoRun:
    workdir = tmp_path_factory.mktemp("byo")
    model = workdir / "byo.onnx"  # the config's relative model path, read from run's working directory
    export = subprocess.run(
        [sys.executable, str(EXAMPLE), str(model)], capture_output=True, text=True, timeout=120
    )
    assert export.returncode == 0, export.stderr
    contract = load_contract(model)
    with pipeline(byo_text, "--warmup", "0", workdir=workdir) as run:
        config = parse_config((workdir / "pipeline.toml").read_text())
        streams = [s.name for s in config.streams]
        endpoint = functools.partial(config.endpoint, run_dir=run.run_dir)
        subscribers = {
            "raw": Subscriber([endpoint(s.endpoint) for s in config.streams], streams, hwm=16),
            "prepared": Subscriber([config.ingest_endpoint(s, run.run_dir) for s in streams], streams),
            "sets": Subscriber(endpoint(config.sync.endpoint), [SET_STREAM], hwm=64),
            "results": Subscriber(endpoint(config.output.endpoint), [RESULT_STREAM], hwm=64),
        }
        try:
            traffic = gather(subscribers, streams, timeout_s=60)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{run.output()}") from None
        finally:
            for subscriber in subscribers.values():
                subscriber.close()
    return ByoRun(config, contract, model, traffic)


def gather(subscribers: dict[str, Subscriber], streams: list[str], timeout_s: float) -> Traffic:
    """Receive from every subscriber until the traffic is complete; fails after timeout_s."""
    traffic = Traffic()
    poller = zmq.Poller()
    for subscriber in subscribers.values():
        poller.register(subscriber.socket, zmq.POLLIN)
    deadline = time.monotonic() + timeout_s
    while not traffic.complete(streams):
        assert time.monotonic() < deadline, (
            f"incomplete after {timeout_s} s: matched { ({s: len(traffic.matched[s]) for s in streams}) }, "
            f"{len(traffic.results)} results"
        )
        ready = dict(poller.poll(100))
        for kind, subscriber in subscribers.items():
            sample = subscriber.recv(timeout_ms=0) if subscriber.socket in ready else None
            if sample is None:
                continue
            if kind == "raw":
                traffic.raw[sample.stream].append(sample)
            elif kind == "prepared":
                traffic.prepared[sample.stream].append(sample)
            elif kind == "sets":
                traffic.sets[sample.seq] = sample
            else:
                traffic.results.append(sample)
            if kind in ("raw", "prepared"):
                traffic.match(sample.stream)
    return traffic


def test_ingest_prepares_each_stream_as_the_preprocessing_functions_with_the_contracts_parameters(
    byo_run: ByoRun,
) -> None:
    for stream in byo_run.config.streams:
        spec = byo_run.contract.input(stream.input)
        prepare, params = PREPROCESS[spec.modality]
        for raw, prepared in byo_run.traffic.matched[stream.name]:
            expected = prepare(raw.arrays[PAYLOAD[spec.modality]], params.from_dict(spec.preprocess))
            assert prepared.meta["source_seq"] == raw.seq
            assert list(prepared.arrays) == [spec.name]
            got = prepared.arrays[spec.name]
            assert (got.dtype, got.shape) == (np.float32, spec.shape), stream.name
            assert got.tobytes() == expected.tobytes(), f"{stream.name} at {raw.stamp_ns}"


def test_results_carry_the_models_own_outputs_and_one_presence_bit_per_stream(byo_run: ByoRun) -> None:
    contract = byo_run.contract
    names = {o.name: o.shape for o in contract.outputs}
    assert set(names) == {"heading", "obstacle_logit", "embedding"}
    for result in byo_run.traffic.results:
        assert set(result.arrays) == {*names, "obstacle_prob", "presence"}
        for name, shape in names.items():
            assert result.arrays[name].shape == shape, name
        logit = result.arrays["obstacle_logit"].astype(np.float64)
        np.testing.assert_allclose(result.arrays["obstacle_prob"], 1 / (1 + np.exp(-logit)), rtol=1e-6)
        assert result.meta["outputs"] == {
            "heading": {"kind": "regression", "classes": [], "units": "rad"},
            "obstacle_logit": {"kind": "logit", "classes": [], "units": ""},
            "embedding": {"kind": "opaque", "classes": [], "units": ""},
        }
        assert "classes" not in result.meta  # no class output
        assert result.meta["inputs"] == ["front", "rear", "bev"]
        assert result.meta["streams"] == ["camera/front", "camera/rear", "lidar/top"]
        assert len(presence(result)) == 3


def test_a_results_outputs_are_what_onnx_runtime_gives_for_its_set(byo_run: ByoRun) -> None:
    contract, traffic = byo_run.contract, byo_run.traffic
    session = ort.InferenceSession(str(byo_run.model), providers=["CPUExecutionProvider"])
    answered = [r for r in traffic.results if r.meta["set_seq"] in traffic.sets]
    assert answered
    for result in answered:
        set_sample = traffic.sets[result.meta["set_seq"]]
        feeds = {
            name: set_sample.arrays.get(name, np.zeros(shape, np.float32))[None]
            for name, shape in contract.tensors.items()
            if name != contract.presence
        }
        feeds[contract.presence] = np.asarray(set_sample.meta["presence"], np.float32)[None]
        outputs = session.run([o.name for o in contract.outputs], feeds)
        for spec, expected in zip(contract.outputs, outputs, strict=True):
            assert result.arrays[spec.name].tobytes() == expected[0].tobytes(), spec.name
