"""Record and replay benchmark: recorder write rate, a live recording of the demo, replay speed and timing.

    python tools/bench_record.py [--rounds 5] [--live-s 60] [--log-s 60] [--write]

1. Write rate: the same 2 s of demo sensor data (rendered once) written R times by `LogWriter` (zstd
   chunks, MCAP records) and, alternating with it, by a baseline that appends the raw wire frames to a file
   (no framing, no compression: the disk's bound). Headroom = LogWriter's median rate / the demo's data rate.
2. Live: `fusion-pipeline run`'s supervisor runs the demo (simulated sensors) while a `Recorder` records
   the four sensors for --live-s seconds; per stream, the messages written against the seq range seen and
   the drivers' own counts (a simulated driver that falls behind skips captures: its `late` counter).
3. Replay: a --log-s log from tools/make_sample_log.py replayed through the graph by `fusion-pipeline
   replay` at --rate 1 and at --max-speed (default model, CPU): speed-up over real time, the rate-1 timing
   error, and whether both runs' results are identical (bitwise).

--write replaces the "## Record and replay" section of docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

from benchdoc import BENCHMARKS, machine, replace_section  # noqa: E402
from make_sample_log import make_log  # noqa: E402

from fusion_pipeline.config import load_config, parse_config  # noqa: E402
from fusion_pipeline.logs import LogReader, LogWriter, Recorder, RecordSettings  # noqa: E402
from fusion_pipeline.ops import Supervisor  # noqa: E402
from fusion_pipeline.transport import encode  # noqa: E402

SECTION = "## Record and replay"
START_NS = 1_700_000_000 * 1_000_000_000
SENSORS = ("camera/front", "lidar/top", "radar/front", "audio/roof")


def _stats(values: list[float]) -> dict[str, float]:
    a = np.asarray(values)
    q1, median, q3 = np.percentile(a, [25, 50, 75])
    return {"median": float(median), "iqr": float(q3 - q1), "min": float(a.min()), "max": float(a.max())}


def bench_write(tmp: Path, rounds: int) -> dict:
    source = tmp / "write_source.mcap"
    make_log(load_config(None), source, 2.0, START_NS)
    messages = [(m.sample, m.log_time_ns) for m in LogReader(source)]
    frames = [encode(s) for s, _ in messages]
    nbytes = sum(sum(memoryview(f).nbytes for f in fs) for fs in frames)
    ours, raw = [], []
    for _ in range(rounds):
        for old in (tmp / "bench.mcap", tmp / "bench.raw"):  # both write fresh files, as a recording does
            old.unlink(missing_ok=True)
        started = time.perf_counter()
        with LogWriter(tmp / "bench.mcap") as writer:
            for (sample, log_time), wire in zip(messages, frames, strict=True):
                writer.write_frames(wire, sample, log_time)
        ours.append(nbytes / (time.perf_counter() - started) / 1e6)
        started = time.perf_counter()
        fd = os.open(tmp / "bench.raw", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        for wire in frames:
            for frame in wire:
                os.write(fd, frame)
        os.close(fd)
        raw.append(nbytes / (time.perf_counter() - started) / 1e6)
    demo_rate = nbytes / 2.0 / 1e6
    ours_s = _stats(ours)
    return {
        "messages": len(messages),
        "demo_mb_s": demo_rate,
        "ours": ours_s,
        "raw": _stats(raw),
        "headroom": ours_s["median"] / demo_rate,
        "file_mb": (tmp / "bench.mcap").stat().st_size / 1e6,
        "wire_mb": nbytes / 1e6,
    }


def bench_live(tmp: Path, duration_s: float) -> dict:
    run_dir = Path(tempfile.mkdtemp(prefix="fp-bench-"))
    text = (ROOT / "fusion_pipeline" / "configs" / "demo.toml").read_text()
    config_path = tmp / "live.toml"
    config_path.write_text(text.replace('run_dir = ""', f'run_dir = "{run_dir}"'))
    config = parse_config(config_path.read_text())
    supervisor = Supervisor(config, config_path, out=io.StringIO())
    thread = threading.Thread(target=supervisor.run, daemon=True)
    thread.start()
    # Record once every driver runs (each sent a heartbeat): the window holds the drivers' steady state.
    drivers = [n for n in supervisor.nodes if n.spec.kind == "sensor_sim"]
    while any(n.last_beat is None for n in drivers):
        time.sleep(0.1)

    def snapshot(node: str, counter: str) -> dict[str, int]:
        return {name: supervisor.counters.totals(f"{node}:{name}").get(counter, 0) for name in SENSORS}

    late_before, ingest_before = snapshot("sensor_sim", "late"), snapshot("ingest", "seq_lost")
    settings = RecordSettings(path=tmp / "live.mcap", streams=SENSORS, duration_s=duration_s)
    recorder = Recorder(config, run_dir, settings)
    recorder.run(lambda: False)
    report = recorder.close()
    late_after, ingest_after = snapshot("sensor_sim", "late"), snapshot("ingest", "seq_lost")
    supervisor.stop()
    thread.join()
    streams = {}
    for name in SENSORS:
        count = report.streams.get(name)
        streams[name] = {
            "written": count.written if count else 0,
            "seq_span": (count.last_seq - count.first_seq + 1) if count else 0,
            "lost_upstream": count.lost_upstream if count else 0,
            "driver_late": late_after[name] - late_before[name],
            "ingest_lost": ingest_after[name] - ingest_before[name],
        }
    size = sum(p.stat().st_size for p in report.paths)
    return {
        "duration_s": report.wall_s,
        "streams": streams,
        "malformed": sum(report.malformed.values()),
        "not_written": report.not_written,
        "file_mb": size / 1e6,
        "wire_mb": report.bytes_in / 1e6,
        "write_mb_s": report.bytes_in / 1e6 / report.wall_s,
    }


def _replay(log: Path, out: Path, *pace: str) -> dict:
    report = out.with_suffix(".json")
    command = [sys.executable, "-m", "fusion_pipeline.cli", "replay", str(log), *pace]
    command += ["--no-progress", "--results", str(out), "--report-json", str(report)]
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True)
    return json.loads(report.read_text())


def _results(path: Path) -> list[tuple]:
    return [
        (m.sample.stamp_ns, {k: a.tobytes() for k, a in m.sample.arrays.items()}) for m in LogReader(path)
    ]


def bench_replay(tmp: Path, log_s: float) -> dict:
    log = tmp / "replay_source.mcap"
    started = time.perf_counter()
    make_log(load_config(None), log, log_s, START_NS)
    made_s = time.perf_counter() - started
    paced = _replay(log, tmp / "paced.mcap", "--rate", "1")
    fast = _replay(log, tmp / "fast.mcap", "--max-speed")
    a, b = _results(tmp / "paced.mcap"), _results(tmp / "fast.mcap")
    return {
        "log_s": log_s,
        "log_mb": log.stat().st_size / 1e6,
        "made_s": made_s,
        "paced": paced,
        "fast": fast,
        "results": (len(a), len(b)),
        "identical": a == b,
    }


def render(write: dict | None, live: dict | None, replay: dict | None, args: argparse.Namespace) -> str:
    lines = [
        SECTION,
        "",
        "```",
        f"python tools/bench_record.py --rounds {args.rounds} --live-s {args.live_s:g} "
        f"--log-s {args.log_s:g} --write",
        "```",
        "",
        f"Machine: {machine()} shared with other work (load average "
        f"{os.getloadavg()[0]:.1f} at the end), Python {platform.python_version()}.",
        "",
    ]
    if write:
        lines += [
            f"**Write rate.** {write['messages']} messages = 2 s of the demo's four sensors "
            f"({write['wire_mb']:.1f} MB of wire data, {write['demo_mb_s']:.1f} MB/s), "
            f"written {args.rounds} times "
            "by each writer, alternating:",
            "",
            "| writer | median MB/s | IQR | min | max |",
            "|---|---|---|---|---|",
            f"| LogWriter (MCAP, zstd chunks) | {write['ours']['median']:.1f} | {write['ours']['iqr']:.1f} "
            f"| {write['ours']['min']:.1f} | {write['ours']['max']:.1f} |",
            f"| baseline: raw frames, os.write | {write['raw']['median']:.1f} | {write['raw']['iqr']:.1f} "
            f"| {write['raw']['min']:.1f} | {write['raw']['max']:.1f} |",
            "",
            f"Headroom over the demo's data rate: **{write['headroom']:.1f}x** (LogWriter median / "
            f"{write['demo_mb_s']:.1f} MB/s); LogWriter / raw = "
            f"{write['ours']['median'] / write['raw']['median']:.2f}. "
            f"File: {write['file_mb']:.1f} MB for {write['wire_mb']:.1f} MB of wire data.",
            "",
        ]
    if live:
        lines += [
            f"**Live recording of the demo** (`fusion-pipeline run` supervisor + `Recorder`, "
            f"{live['duration_s']:.0f} s): {live['wire_mb']:.0f} MB of wire data at "
            f"{live['write_mb_s']:.1f} MB/s "
            f"into {live['file_mb']:.0f} MB of MCAP; malformed {live['malformed']}, not written "
            f"{live['not_written']}.",
            "",
            "| stream | written | seq span seen | seq gaps | driver skipped (late) | ingest's seq gaps |",
            "|---|---|---|---|---|---|",
        ]
        for name, s in live["streams"].items():
            lines.append(
                f"| {name} | {s['written']} | {s['seq_span']} | {s['lost_upstream']} | {s['driver_late']} "
                f"| {s['ingest_lost']} |"
            )
        lines += [
            "",
            "A seq gap is a message the recorder never received. A simulated driver that falls more than one "
            "period behind (CPU starved) skips captures and counts them as `late`; a real-time publisher "
            "(HWM 8) drops for a subscriber that does not drain in time. The pipeline's own ingest node "
            "subscribes to the same drivers: its gaps, beside the recorder's, show what the machine lost for "
            "every subscriber. Driver and ingest counts come from heartbeats at the start and end of the "
            "recording, so they are approximate at the edges.",
            "",
        ]
    if replay:
        paced, fast = replay["paced"], replay["fast"]
        error = paced["timing_error_ms"]
        lines += [
            f"**Replay** of a {replay['log_s']:g} s demo log ({replay['log_mb']:.0f} MB, made by "
            f"tools/make_sample_log.py in {replay['made_s']:.0f} s) through the graph, "
            "default model on the CPU:",
            "",
            "| pacing | wall s | speed-up over real time | results | inference skipped | order gaps |",
            "|---|---|---|---|---|---|",
        ]
        for name, r in (("--rate 1", paced), ("--max-speed", fast)):
            lines.append(
                f"| {name} | {r['wall_s']:.1f} | {r['speedup']:.2f}x | {r['results']} "
                f"| {r['inference_skipped']} | {r['replay_gaps']} |"
            )
        lines += [
            "",
            f"--rate 1 timing error (send time minus target): p50 {error['p50']:.2f} ms, "
            f"p99 {error['p99']:.2f} ms, "
            f"max {error['max']:.2f} ms. Results of the two runs identical (stamps, masks, outputs bitwise): "
            f"**{'yes' if replay['identical'] else 'NO'}** "
            f"({replay['results'][0]} and {replay['results'][1]} results).",
            "",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="write-rate rounds per writer")
    parser.add_argument("--live-s", type=float, default=60.0, help="live recording length (0 = skip)")
    parser.add_argument("--log-s", type=float, default=60.0, help="replayed log length (0 = skip)")
    parser.add_argument("--write", action="store_true", help="update docs/BENCHMARKS.md")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-record-") as tmp:
        write = bench_write(Path(tmp), args.rounds) if args.rounds else None
        print(json.dumps(write), file=sys.stderr)
        live = bench_live(Path(tmp), args.live_s) if args.live_s else None
        print(json.dumps(live), file=sys.stderr)
        replay = bench_replay(Path(tmp), args.log_s) if args.log_s else None
        print(json.dumps(replay, default=str), file=sys.stderr)
    text = render(write, live, replay, args)
    print(text)
    if args.write:
        replace_section(BENCHMARKS, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
