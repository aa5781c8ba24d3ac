"""Batch throughput: `fusion-pipeline batch` over the same logs with 1, 2 and 4 workers, on the local pool
and on a local Ray.

    python tools/bench_batch.py [--logs 8] [--log-s 20] [--workers 1,2,4] [--repeats 3] [--write]

The logs are --logs demo logs of --log-s seconds each (tools/make_sample_log.py, each from its own start),
replayed offline with the default model on the CPU. Each run is the command as a user runs it, in a
process of its own, into a fresh output directory, so every log is run:

- command wall s: the whole command, start-up included (Python, the model's preflight, the pool's
  processes or Ray, every worker building its graph);
- batch wall s: the batch's own figure (summary.json's run.wall_s), from starting the pool or Ray to the
  last log's manifest line;
- throughput: log seconds replayed per command wall second, and logs per minute.

Runs alternate their order from one repeat to the next (forwards, then backwards), so that neither runner
always runs first. --write replaces the "## Batch throughput" section of docs/BENCHMARKS.md and draws
docs/bench_batch.png.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import onnxruntime
import ray

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

from benchdoc import BENCHMARKS, machine, replace_section  # noqa: E402
from make_sample_log import DEFAULT_START_S, make_log  # noqa: E402

from fusion_pipeline.config import load_config  # noqa: E402

SECTION = "## Batch throughput"
PLOT = BENCHMARKS.parent / "bench_batch.png"
RUNNERS = {"local pool": (), "local Ray": ("--ray",)}


def make_logs(folder: Path, count: int, log_s: float) -> float:
    """`count` demo logs of `log_s` s in `folder`; their size in MB."""
    config = load_config(None)
    for i in range(count):
        make_log(config, folder / f"drive{i}.mcap", log_s, (DEFAULT_START_S + 1000 * i) * 1_000_000_000)
    return sum(p.stat().st_size for p in folder.glob("*.mcap")) / 1e6


def batch(logs: Path, out: Path, workers: int, flags: tuple[str, ...]) -> dict:
    """One `fusion-pipeline batch` command: its summary's run figures and the command's wall s."""
    command = [sys.executable, "-m", "fusion_pipeline.cli", "batch", str(logs), "--out", str(out)]
    command += ["--workers", str(workers), "--no-progress", *flags]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr}")
    summary = json.loads((out / "summary.json").read_text())
    return {
        "command_wall_s": wall,
        "batch_wall_s": summary["run"]["wall_s"],
        "log_s": summary["run"]["log_s"],
        "logs": summary["run"]["ran"],
    }


def bench(tmp: Path, count: int, log_s: float, workers: list[int], repeats: int) -> dict:
    logs = tmp / "logs"
    logs.mkdir()
    started = time.perf_counter()
    size_mb = make_logs(logs, count, log_s)
    made_s = time.perf_counter() - started
    cases = [(runner, n) for runner in RUNNERS for n in workers]
    runs: dict[str, list[dict]] = {f"{runner}|{n}": [] for runner, n in cases}
    for repeat in range(repeats):
        for runner, n in cases if repeat % 2 == 0 else reversed(cases):
            key = f"{runner}|{n}"
            out = tmp / f"out-{repeat}-{runner.replace(' ', '_')}-{n}"
            runs[key].append(batch(logs, out, n, RUNNERS[runner]))
            print(f"{runner}, {n} workers, #{repeat}: {runs[key][-1]}", file=sys.stderr)
    return {
        "logs": count,
        "log_s": log_s,
        "size_mb": size_mb,
        "made_s": made_s,
        "workers": workers,
        "runs": runs,
    }


def _summary(runs: list[dict]) -> dict[str, float]:
    throughput = [r["log_s"] / r["command_wall_s"] for r in runs]
    per_min = [60 * r["logs"] / r["command_wall_s"] for r in runs]
    return {
        "throughput": statistics.median(throughput),
        "throughput_min": min(throughput),
        "throughput_max": max(throughput),
        "per_min": statistics.median(per_min),
        "command_wall_s": statistics.median(r["command_wall_s"] for r in runs),
        "batch_wall_s": statistics.median(r["batch_wall_s"] for r in runs),
        "batch_throughput": statistics.median(r["log_s"] / r["batch_wall_s"] for r in runs),
    }


def plot(data: dict, path: Path) -> None:
    """Throughput and logs per minute against workers: every run and the median, per runner."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8))
    panels = [
        ("log s replayed per wall s (whole command)", lambda r: r["log_s"] / r["command_wall_s"]),
        ("logs per minute (whole command)", lambda r: 60 * r["logs"] / r["command_wall_s"]),
    ]
    workers = data["workers"]
    for ax, (title, figure) in zip(axes, panels, strict=True):
        for i, runner in enumerate(RUNNERS):
            medians = []
            for n in workers:
                values = [figure(r) for r in data["runs"][f"{runner}|{n}"]]
                medians.append(statistics.median(values))
                ax.plot([n] * len(values), values, "o", color=f"C{i}", markersize=3, alpha=0.6)
            ax.plot(workers, medians, "-", color=f"C{i}", label=runner)
        ax.axvline(os.cpu_count() or 1, color="grey", linestyle=":", linewidth=0.9)
        ax.set_xticks(workers)
        ax.set_xlabel("workers (dotted: the machine's CPUs)")
        ax.set_title(title, fontsize=10)
        ax.set_ylim(bottom=0)
    axes[0].legend(fontsize=8, loc="lower right")
    fig.suptitle(
        f"batch over {data['logs']} demo logs of {data['log_s']:g} s, default model, CPU ({machine()})",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def render(data: dict, args: argparse.Namespace) -> str:
    total_s = data["logs"] * data["log_s"]
    cpus = os.cpu_count() or 1
    oversubscribed = " and ".join(f"{n} workers" for n in data["workers"] if n > cpus)
    lines = [
        SECTION,
        "",
        "```",
        f"python tools/bench_batch.py --logs {args.logs} --log-s {args.log_s:g} "
        f"--workers {','.join(map(str, data['workers']))} --repeats {args.repeats} --write",
        "```",
        "",
        f"Machine: {machine()} shared with other work (load average {os.getloadavg()[0]:.1f} at the "
        f"end), Python {platform.python_version()}, onnxruntime {onnxruntime.__version__} (CPU), "
        f"Ray {ray.__version__}. Logs: {data['logs']} demo logs of {data['log_s']:g} s ({total_s:g} s in "
        f"all, {data['size_mb'] / 1e3:.1f} GB, made by tools/make_sample_log.py in {data['made_s']:.0f} s), "
        f"one task per log. {args.repeats} run(s) of each case, alternating the order; medians, with "
        "min-max. "
        "Each worker runs ONNX Runtime on cores / workers intra-op threads (at least 1). "
        f"This machine has {cpus} cores: "
        + (f"{oversubscribed} oversubscribe it." if oversubscribed else "no case oversubscribes it."),
        "",
        "| runner | workers | log s per wall s | logs/min | command wall s | batch wall s "
        "| log s per batch s |",
        "|---|---|---|---|---|---|---|",
    ]
    rows = {key: _summary(runs) for key, runs in data["runs"].items()}
    for key, r in rows.items():
        runner, n = key.split("|")
        lines.append(
            f"| {runner} | {n} | **{r['throughput']:.1f}** ({r['throughput_min']:.1f}-"
            f"{r['throughput_max']:.1f}) | {r['per_min']:.1f} | {r['command_wall_s']:.1f} | "
            f"{r['batch_wall_s']:.1f} | {r['batch_throughput']:.1f} |"
        )
    first, *more = data["workers"]
    scaling = []
    for runner in RUNNERS:
        base = rows[f"{runner}|{first}"]["throughput"]
        gains = ", ".join(f"{rows[f'{runner}|{n}']['throughput'] / base:.2f}x with {n} workers" for n in more)
        scaling.append(f"{runner}: {gains}")
    # Ray's fixed cost on one machine: its batch wall s less the pool's, with as many workers.
    ray_cost = statistics.median(
        rows[f"local Ray|{n}"]["batch_wall_s"] - rows[f"local pool|{n}"]["batch_wall_s"]
        for n in data["workers"]
    )
    startup = statistics.median(
        r["command_wall_s"] - r["batch_wall_s"] for runs in data["runs"].values() for r in runs
    )
    lines += [
        "",
        f"Against {first} worker(s): {'; '.join(scaling)}. Command wall s is the whole command; batch wall s "
        "starts the pool or Ray, so it holds starting the workers (and a local Ray), each worker building "
        f"its graph once, and the logs; the command's part before it (Python, imports, the model's "
        f"preflight) took {startup:.1f} s (median). A local Ray costs {ray_cost:.1f} s more than the pool "
        "per batch (median difference of their batch wall s at equal workers): starting and stopping Ray and "
        "its worker processes. A cluster's Ray is started once for many batches, and its throughput on more "
        "cores is not measured here.",
        "",
        f"![batch throughput]({PLOT.name})",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logs", type=int, default=8, help="logs in the batch (default 8)")
    parser.add_argument("--log-s", type=float, default=20.0, help="seconds per log (default 20)")
    parser.add_argument("--workers", default="1,2,4", help="worker counts, comma-separated (default 1,2,4)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each case (default 3)")
    parser.add_argument("--write", action="store_true", help="update docs/BENCHMARKS.md and the plot")
    args = parser.parse_args(argv)
    workers = [int(n) for n in args.workers.split(",")]
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        data = bench(Path(tmp), args.logs, args.log_s, workers, args.repeats)
    section = render(data, args)
    print(section)
    if args.write:
        replace_section(BENCHMARKS, section)
        plot(data, PLOT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
