"""Offline replay against the socket graph: one demo log through `replay --offline` (the stages in one
process, no sockets), the same with `--verify-crcs`, and `replay --max-speed` (the process graph), in turn.

    python tools/bench_offline.py [--log-s 60] [--repeats 5] [--write]

The log is --log-s seconds of the demo's simulated sensors (tools/make_sample_log.py), replayed with the
default model on the CPU. Each run is the CLI as a user runs it, in a process of its own:

- replay wall s: the report's own figure, from the first message sent to the last result (start-up,
  model load and the graph's start excluded); speed-up over real time = log s / replay wall s;
- command wall s and CPU s: the whole command and every process it started (getrusage of the children,
  the graph's nodes included), start-up included; cores busy = CPU s / command wall s;
- per core: log s replayed per CPU second of the command, i.e. the speed-up one core would give.

The first repeat's results of both are compared, stamps, presence and outputs to the bit. --write
replaces the "## Offline replay" section of docs/BENCHMARKS.md and draws docs/bench_offline.png.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import onnxruntime

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

from benchdoc import BENCHMARKS, machine, replace_section  # noqa: E402
from make_sample_log import DEFAULT_START_S, make_log  # noqa: E402

from fusion_pipeline.config import load_config  # noqa: E402
from fusion_pipeline.logs import LogReader  # noqa: E402

SECTION = "## Offline replay"
PLOT = BENCHMARKS.parent / "bench_offline.png"
#: The issue's acceptance line: offline replay of the 60 s demo log at 30x real time or more.
TARGET = 30.0
MODES = {
    "offline": ("--offline",),
    "offline, CRCs verified": ("--offline", "--verify-crcs"),
    "socket graph": ("--max-speed",),
}


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def replay(log: Path, results: Path, flags: tuple[str, ...]) -> dict:
    """One `fusion-pipeline replay` command: its report, command wall s and CPU s."""
    report = results.with_suffix(".json")
    command = [sys.executable, "-m", "fusion_pipeline.cli", "replay", str(log), *flags]
    command += ["--no-progress", "--results", str(results), "--report-json", str(report)]
    cpu, started = _children_cpu_s(), time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr}")
    out = json.loads(report.read_text())
    return {
        "replay_wall_s": out["wall_s"],
        "log_s": out["log_s"],
        "results": out["results"],
        "command_wall_s": wall,
        "cpu_s": _children_cpu_s() - cpu,
        "replay_cpu_s": out.get("cpu_s"),  # the offline report's own: its process during the replay
    }


def _results(path: Path) -> list[tuple]:
    """A results log to the bit, but for its wall-clock stage stamps."""
    return [
        (
            m.sample.seq,
            m.sample.stamp_ns,
            {k: v for k, v in m.sample.meta.items() if k != "stages"},
            {name: a.tobytes() for name, a in m.sample.arrays.items()},
        )
        for m in LogReader(path)
    ]


def bench(tmp: Path, log_s: float, repeats: int) -> dict:
    log = tmp / "demo.mcap"
    started = time.perf_counter()
    make_log(load_config(None), log, log_s, DEFAULT_START_S * 1_000_000_000)
    made_s = time.perf_counter() - started
    runs: dict[str, list[dict]] = {mode: [] for mode in MODES}
    for repeat in range(repeats):
        order = list(MODES) if repeat % 2 == 0 else list(reversed(MODES))  # neither always goes first
        for mode in order:
            results = tmp / f"{mode.replace(' ', '_')}-{repeat}.mcap"
            runs[mode].append(replay(log, results, MODES[mode]))
            print(f"{mode} #{repeat}: {runs[mode][-1]}", file=sys.stderr)
    first = {mode: _results(tmp / f"{mode.replace(' ', '_')}-0.mcap") for mode in MODES}
    return {
        "log_s": log_s,
        "log_mb": log.stat().st_size / 1e6,
        "made_s": made_s,
        "runs": runs,
        "identical": first["offline"] == first["socket graph"],
        "results": {mode: len(r) for mode, r in first.items()},
    }


def _summary(runs: list[dict]) -> dict[str, float]:
    speedups = [r["log_s"] / r["replay_wall_s"] for r in runs]
    per_core = [r["log_s"] / r["cpu_s"] for r in runs]
    return {
        "speedup": statistics.median(speedups),
        "speedup_min": min(speedups),
        "speedup_max": max(speedups),
        "replay_wall_s": statistics.median(r["replay_wall_s"] for r in runs),
        "command_wall_s": statistics.median(r["command_wall_s"] for r in runs),
        "cpu_s": statistics.median(r["cpu_s"] for r in runs),
        "cores": statistics.median(r["cpu_s"] / r["command_wall_s"] for r in runs),
        "per_core": statistics.median(per_core),
        "per_core_min": min(per_core),
        "per_core_max": max(per_core),
    }


def plot(data: dict, path: Path) -> None:
    """Speed-up over real time and per core, every run and the median, per mode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(8.5, 3.8))
    panels = [
        ("speed-up over real time (replay wall)", lambda r: r["log_s"] / r["replay_wall_s"]),
        ("log s per CPU s (whole command)", lambda r: r["log_s"] / r["cpu_s"]),
    ]
    for ax, (title, figure) in zip(axes, panels, strict=True):
        for i, runs in enumerate(data["runs"].values()):
            values = [figure(r) for r in runs]
            median = statistics.median(values)
            ax.bar(i, median, color=f"C{i}", alpha=0.5, width=0.6)
            ax.plot([i] * len(values), values, "o", color=f"C{i}", markersize=4)
            ax.annotate(f"{median:.1f}x", (i + 0.32, median), ha="left", va="center", fontsize=9)
        ax.set_xticks(range(len(data["runs"])), list(data["runs"]))
        ax.set_xlim(-0.6, len(data["runs"]) - 0.1)
        ax.set_title(title, fontsize=10)
        ax.set_ylim(bottom=0)
    axes[0].axhline(TARGET, color="grey", linestyle=":", linewidth=0.9, label=f"target {TARGET:g}x")
    axes[0].set_ylim(top=max(TARGET, axes[0].get_ylim()[1]) * 1.1)
    axes[0].legend(fontsize=8, loc="upper right")
    fig.suptitle(f"Replay of a {data['log_s']:g} s demo log, default model, CPU ({machine()})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def render(data: dict, args: argparse.Namespace) -> str:
    rows = {mode: _summary(runs) for mode, runs in data["runs"].items()}
    offline = rows["offline"]
    lines = [
        SECTION,
        "",
        "```",
        f"python tools/bench_offline.py --log-s {args.log_s:g} --repeats {args.repeats} --write",
        "```",
        "",
        f"Machine: {machine()} shared with other work (load average {os.getloadavg()[0]:.1f} at the end), "
        f"Python {platform.python_version()}, onnxruntime {onnxruntime.__version__} (CPU, the config's "
        f"intra-op threads: 0 = one per core). Log: {data['log_s']:g} s of the demo's four simulated sensors "
        f"({data['log_mb']:.0f} MB, made by tools/make_sample_log.py in {data['made_s']:.0f} s). "
        f"{args.repeats} runs of each command, alternating; medians, with min-max.",
        "",
        "| command | speed-up over real time | replay wall s | command wall s | CPU s | cores busy "
        "| log s per CPU s (per core) |",
        "|---|---|---|---|---|---|---|",
    ]
    for mode, r in rows.items():
        flags = " ".join(MODES[mode])
        lines.append(
            f"| `replay {flags}` ({mode}) | **{r['speedup']:.1f}x** ({r['speedup_min']:.1f}-"
            f"{r['speedup_max']:.1f}) | {r['replay_wall_s']:.2f} | {r['command_wall_s']:.2f} | "
            f"{r['cpu_s']:.1f} | {r['cores']:.2f} | {r['per_core']:.1f}x ({r['per_core_min']:.1f}-"
            f"{r['per_core_max']:.1f}) |"
        )
    socket, verified = rows["socket graph"], rows["offline, CRCs verified"]
    replay_cpu = statistics.median(r["replay_cpu_s"] for r in data["runs"]["offline"])
    lines += [
        "",
        f"Offline against the socket graph: {offline['speedup'] / socket['speedup']:.1f}x the replay speed, "
        f"{offline['per_core'] / socket['per_core']:.1f}x per core. The offline command is one process with "
        "four threads (reading the log ahead, with two more decompressing its chunks; ingest and the sync "
        "stage; the front ends of the frames a set takes; inference, on one ONNX Runtime thread, and the "
        "writes); the socket graph is the CLI (replayer, supervisor) and six node processes. "
        "Replay wall s leaves out start-up (model load; the graph's nodes); the CPU s and the per-core "
        "figure include it, and both commands read the log through once before they start (a log cut short "
        f"is refused up front). The offline replay alone took {replay_cpu:.1f} CPU s (its report): "
        f"{data['log_s'] / replay_cpu:.1f}x real time per core, so with all {os.cpu_count()} cores of this "
        f"machine busy with it and nothing else, at best {data['log_s'] / replay_cpu * os.cpu_count():.0f}x.",
        "",
        f"`--verify-crcs` (the CRC of every chunk and of the file, as the exports check them): "
        f"{verified['speedup']:.1f}x real time against {offline['speedup']:.1f}x, "
        f"{verified['speedup'] / offline['speedup']:.2f} of the speed; zlib's CRC-32 over the "
        f"{data['log_mb']:.0f} MB, on the reading threads, on {os.cpu_count()} cores. So `replay` and "
        "`batch` leave it to the option; without it, damage that leaves valid records (bits flipped in a "
        "chunk's data) is replayed unseen.",
        "",
        f"Acceptance (issue 15): offline at least {TARGET:g}x real time: "
        f"**{'yes' if offline['speedup'] >= TARGET else 'no'}** ({offline['speedup']:.1f}x). "
        f"Results of the two identical (stamps, presence, outputs bitwise): "
        f"**{'yes' if data['identical'] else 'NO'}** ({data['results']['offline']} and "
        f"{data['results']['socket graph']} results).",
        "",
        f"![offline replay against the socket graph]({PLOT.name})",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--log-s", type=float, default=60.0, help="seconds of log (default 60)")
    parser.add_argument("--repeats", type=int, default=5, help="runs of each command (default 5)")
    parser.add_argument("--write", action="store_true", help="update docs/BENCHMARKS.md and the plot")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-offline-") as tmp:
        data = bench(Path(tmp), args.log_s, args.repeats)
    section = render(data, args)
    print(section)
    if args.write:
        replace_section(BENCHMARKS, section)
        plot(data, PLOT)
    return 0 if data["identical"] else 1


if __name__ == "__main__":
    sys.exit(main())
