"""The floor under the live pipeline's overhead: the demo's processes and payloads with the work taken out.

    python tools/bench_e2e_floor.py --duration 60 --write

Runs the demo's four simulated sensor drivers (nodes/sensor_sim, unchanged, at the demo rates) and, in
place of the ingest, synchronizer and inference nodes, relays in as many processes that receive what
the real node receives and send what it sends -- same transport, same sockets, same payload sizes --
but compute nothing: an ingest relay answers each driver message with zeros of the model inputs'
shapes (audio chunks go on as they came), the sync relay sends a set-sized message once every stream
has a message for the reference stamp (or max_wait passed), the inference relay publishes a small
result at once. The stages and the overhead are derived exactly as for the real pipeline
(fusion_pipeline.ops.metrics.ResultStats), so the relays' overhead is what the ZeroMQ hops and the
scheduler alone cost on this machine, with four drivers sending at the same instants. Then the real
demo runs for as long (tools/bench_e2e.py, nominal scenario) and both are reported side by side.
With --write it replaces the "## End-to-end floor" section of docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing as mp
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from multiprocessing.synchronize import Event
from pathlib import Path

import numpy as np
from bench_e2e import Scenario, run_scenario, scenario_config
from benchdoc import BENCHMARKS, machine, replace_section

from fusion_pipeline.allocator import tune_allocator
from fusion_pipeline.binding import Bindings
from fusion_pipeline.config import Config, load_config
from fusion_pipeline.inference import load_bindings
from fusion_pipeline.ops import ResultStats
from fusion_pipeline.protocol import (
    CAPTURE,
    INFERENCE_END,
    INFERENCE_START,
    INGEST_IN,
    INGEST_OUT,
    PUBLISH,
    SYNC_EMIT,
    SYNC_IN,
)
from fusion_pipeline.transport import Publisher, Role, Sample, Subscriber

SECTION = "## End-to-end floor"
POLL_MS = 20
TOLERANCE_NS = 1_000_000  # stamps of commensurate sensors meet on the ns grid; this only absorbs rounding


def _zeros(shapes: Mapping[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    """Zeros of these tensor shapes, by name: what an ingest node sends, a whole set, or a result."""
    return {name: np.zeros(shape, np.float32) for name, shape in shapes.items()}


def ingest_relay(config: Config, bindings: Bindings, run_dir: Path, name: str, stop: Event) -> None:
    tune_allocator()
    stream = config.stream(name)
    source = Subscriber(config.endpoint(stream.endpoint, run_dir), topics=[name])
    sink = Publisher(config.ingest_endpoint(name, run_dir), stream=name, modality=stream.modality)
    receive = source.recv if stream.modality == "audio" else source.recv_newest
    zeros = _zeros(bindings.of(name).input.tensors)  # the model input the stream feeds
    gc.freeze()
    while not stop.is_set():
        sample = receive(timeout_ms=POLL_MS)
        if sample is None:
            continue
        arrival = time.time_ns()
        arrays = dict(sample.arrays) if stream.modality == "audio" else zeros
        stages = {INGEST_IN: arrival, INGEST_OUT: time.time_ns()}
        sink.send(Sample(name, stream.modality, sample.seq, sample.stamp_ns, arrays, "", {"stages": stages}))
    sink.close()
    source.close()


def sync_relay(config: Config, bindings: Bindings, run_dir: Path, stop: Event) -> None:
    """A set for each reference stamp t once every other stream has data up to t (audio: a chunk's end)."""
    tune_allocator()
    reference = config.sync.reference
    others = [s for s in config.streams if s.name != reference]
    source = Subscriber([config.ingest_endpoint(s.name, run_dir) for s in config.streams])
    sink = Publisher(config.endpoint(config.sync.endpoint, run_dir), "sets", "set", role=Role.SET)
    chunk_ns = {s.name: round(1e9 / s.rate_hz) if s.modality == "audio" else 0 for s in others}
    max_wait_ns = round(config.sync.max_wait_ms * 1e6)
    set_arrays = _zeros({n: s for b in bindings.by_stream.values() for n, s in b.input.tensors.items()})
    covered: dict[str, int] = {}  # per other stream: the newest time its data reaches
    pending: dict[int, dict[str, int]] = {}  # reference stamp -> its stages
    built = 0
    gc.freeze()
    while not stop.is_set():
        sample = source.recv(timeout_ms=POLL_MS)
        now = time.time_ns()
        if sample is not None and sample.stream == reference:
            pending[sample.stamp_ns] = {CAPTURE: sample.stamp_ns, **sample.meta["stages"]}
        elif sample is not None:
            covered[sample.stream] = sample.stamp_ns + chunk_ns[sample.stream]
        for stamp in sorted(pending):
            complete = all(covered.get(s.name, 0) >= stamp - TOLERANCE_NS for s in others)
            if not complete and now < stamp + max_wait_ns:
                continue
            stages = pending.pop(stamp) | {SYNC_IN: now}
            stages[SYNC_EMIT] = time.time_ns()
            message = Sample("sets", "set", built, stamp, set_arrays, "", {"stages": stages})
            sink.send(message, zero_copy=False)  # as the synchronizer sends a set
            built += 1
    sink.close()
    source.close()


def inference_relay(config: Config, bindings: Bindings, run_dir: Path, stop: Event) -> None:
    tune_allocator()
    contract = bindings.contract
    stream_of = {b.input.name: name for name, b in bindings.by_stream.items()}
    streams = [stream_of.get(name, "") for name in contract.presence_order]  # behind each presence bit
    arrays = _zeros({o.name: o.shape for o in contract.outputs})
    arrays["presence"] = np.ones(len(streams), np.uint8)
    source = Subscriber(config.endpoint(config.sync.endpoint, run_dir), role=Role.SET)
    results_url = config.endpoint(config.output.endpoint, run_dir)
    sink = Publisher(results_url, "result/floor", "result", role=Role.RESULT)
    gc.freeze()
    while not stop.is_set():
        fused = source.recv_newest(timeout_ms=POLL_MS)
        if fused is None:
            continue
        start = time.time_ns()
        stages = dict(fused.meta["stages"]) | {INFERENCE_START: start, INFERENCE_END: start}
        stages[PUBLISH] = time.time_ns()
        meta = {"stages": stages, "streams": streams}
        sink.send(Sample("result/floor", "result", fused.seq, fused.stamp_ns, arrays, "", meta))
    sink.close()
    source.close()


def run_floor(duration_s: float, warmup_s: float, workdir: Path) -> ResultStats:
    run_dir = Path(tempfile.mkdtemp(prefix="fp-floor-", dir=workdir))
    config_path = workdir / "floor.toml"
    config_path.write_text(scenario_config(run_dir, 1.0))
    config = load_config(config_path)
    bindings = load_bindings(config)
    fork = mp.get_context("fork")
    stop = fork.Event()
    relays = [
        fork.Process(target=ingest_relay, args=(config, bindings, run_dir, s.name, stop))
        for s in config.streams
    ]
    relays += [
        fork.Process(target=sync_relay, args=(config, bindings, run_dir, stop)),
        fork.Process(target=inference_relay, args=(config, bindings, run_dir, stop)),
    ]
    for relay in relays:
        relay.start()
    drivers = [
        subprocess.Popen(
            [sys.executable, "-m", "nodes.sensor_sim", "--config", str(config_path)]
            + ["--run-dir", str(run_dir), "--stream", s.name],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for s in config.streams
    ]
    stats = ResultStats([s.name for s in config.streams])
    results = Subscriber(config.endpoint(config.output.endpoint, run_dir), topics=["result/"], hwm=10_000)
    end_ns = None
    try:
        while end_ns is None or time.time_ns() < end_ns:
            sample = results.recv(timeout_ms=50)
            if sample is None:
                continue
            if end_ns is None:  # up: measure from the first result + warm-up
                stats.since_ns = sample.stamp_ns + int(warmup_s * 1e9)
                end_ns = stats.since_ns + int(duration_s * 1e9)
            stats.add(sample, time.time_ns())
    finally:
        results.close()
        for driver in drivers:
            driver.send_signal(signal.SIGTERM)
        stop.set()
        for process in [*drivers, *relays]:
            process.wait(10) if isinstance(process, subprocess.Popen) else process.join(10)
    return stats


ROWS = [
    "capture->ingest_in",
    "ingest_in->ingest_out",
    "sync_in->sync_emit",
    "sync_emit->inference_start",
    "inference_end->publish",
    "sync_wait",
    "overhead",
    "end_to_end",
]


def report(floor: ResultStats, pipeline: ResultStats, command: str) -> str:
    a, b = floor.latency(), pipeline.latency()
    lines = [
        "| latency (ms) | relays p50 | relays p99 | pipeline p50 | pipeline p99 | p99 pipeline - relays |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in ROWS:
        fa, fb = a.get(row, {}), b.get(row, {})
        gap = fb.get("p99", 0.0) - fa.get("p99", 0.0)
        bold = "**" if row == "overhead" else ""
        lines.append(
            f"| {bold}{row}{bold} | {fa.get('p50', '-')} | {fa.get('p99', '-')} | {fb.get('p50', '-')} "
            f"| {fb.get('p99', '-')} | {gap:+.2f} |"
        )
    floor_p99 = a["overhead"]["p99"]
    verdict = "under" if floor_p99 <= 5 else "over"
    return (
        f"{SECTION}\n\n"
        "What the demo's topology costs before any work: the four simulated drivers unchanged, and relays "
        "in place of the ingest, synchronizer and inference nodes that receive and send the same payloads "
        "over the same sockets but compute nothing (no preprocessing, no matching beyond stamps, no "
        "model). Then the real demo, run right after for as long. Stages and overhead as in End to end.\n\n"
        f"```\n{command}\n```\n\n"
        f"Machine: {machine()}, shared with other work. Results: relays {floor.timed}, pipeline "
        f"{pipeline.timed}.\n\n" + "\n".join(lines) + "\n\n"
        f"The relays' overhead p99 is {floor_p99:.2f} ms, {verdict} the 5 ms the nominal-demo acceptance "
        f"allows the whole pipeline; the pipeline's is {b['overhead']['p99']:.2f} ms.\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds measured per run (%(default)s)")
    parser.add_argument("--warmup", type=float, default=5.0, help="start-up seconds left out (%(default)s)")
    parser.add_argument("--write", action="store_true", help="update docs/BENCHMARKS.md")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        print(f"relays for {args.duration:g} s ...", file=sys.stderr)
        floor = run_floor(args.duration, args.warmup, Path(tmp))
        print(f"pipeline for {args.duration:g} s ...", file=sys.stderr)
        pipeline = Scenario("nominal", 1.0)
        run_scenario(pipeline, args.duration, args.warmup, Path(tmp))
    assert pipeline.stats is not None
    text = report(floor, pipeline.stats, "python tools/bench_e2e_floor.py " + " ".join(sys.argv[1:]))
    print(text)
    if args.write:
        replace_section(BENCHMARKS, text)


if __name__ == "__main__":
    main()
