"""End-to-end benchmark of a live pipeline: latency capture -> result, per stage, CPU per process, drops.

    python tools/bench_e2e.py --duration 60 --write
    python tools/bench_e2e.py -c configs/surround.toml --duration 60 --write

Runs `fusion-pipeline run` on a config (-c; default the embedded demo) three times: at the config's
sensor rates, again with ``pipeline.realtime_priority = 20`` (the data-path nodes under SCHED_FIFO, as a
vehicle would run them; skipped with --no-realtime), then at 2x overload (every sensor at double rate,
so the reference stream (sync.reference) and the sets double too). The config's simulated drivers are
started by the run; relative paths in it (a model's) are read from the working directory, as
`fusion-pipeline run` reads them. In each run this tool
subscribes to the results like any consumer, samples every node's CPU% once a second (psutil), and
reads the run's --summary-json for drops and restarts. Figures cover --duration seconds of results,
after a --warmup that starts with the first result (process start-up is not measured); then the tool
stops the run with SIGTERM. With --write it replaces the config's own section of docs/BENCHMARKS.md
("## End to end" for the embedded demo, "## End to end: NAME" for a config whose pipeline.name is NAME)
and writes its plot (docs/e2e_latency_cdf.png, docs/e2e_latency_NAME.png).

With --viewer N it runs instead N rounds of the nominal config without and with the viewer node
(``[view] enabled``, saving an .rrd, as `fusion-pipeline run` would start it), in turn, and compares the
end-to-end p99 with the viewer against the spread of the runs without it ("## End to end with the viewer").
With --neighbours each round adds two runs with a SCHED_IDLE neighbour in the viewer's place
(tools/idle_neighbour.py): a CPU burner at BURNER_SHARE of a core, and a subscriber on every driver's
socket that drops what it receives, to tell apart what the viewer's CPU, its subscriptions and its
own work cost the pipeline.

Definitions (fusion_pipeline.ops.metrics): end_to_end = capture stamp -> result publish; delivered = capture
-> arrival at this tool; model = inference_start -> inference_end; sync_wait = reference ingest_out ->
arrival of the message (or deadline) completing its set; overhead = end_to_end - model - sync_wait.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from benchdoc import BENCHMARKS, machine, replace_section

from fusion_pipeline.config import Config, ViewConfig, config_source, parse_config
from fusion_pipeline.errors import FusionError
from fusion_pipeline.node import node_kind
from fusion_pipeline.ops import ResultStats
from fusion_pipeline.transport import Subscriber

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
SECTION = "## End to end"
DEMO = resources.files("fusion_pipeline").joinpath("configs", "demo.toml").read_text()

REALTIME_PRIORITY = 20

#: What each consecutive pair of stage stamps measures, in the report's words.
STAGE_NAMES = {
    "capture->ingest_in": "driver to ingest",
    "ingest_in->ingest_out": "ingest",
    "ingest_out->sync_in": "sync wait",
    "sync_in->sync_emit": "sync",
    "sync_emit->inference_start": "inference wait",
    "inference_start->inference_end": "model",
    "inference_end->publish": "publish",
    "publish->received": "to this subscriber",
}


@dataclass(frozen=True)
class Suite:
    """The config a benchmark runs: its text and its file (None: the embedded demo)."""

    text: str = DEMO
    path: Path | None = None

    @cached_property
    def config(self) -> Config:
        return parse_config(self.text, config_source(self.path))

    @property
    def section(self) -> str:
        """Its section of docs/BENCHMARKS.md: one per config, so that one run never replaces another's."""
        return SECTION if self.path is None else f"{SECTION}: {self.config.pipeline.name}"

    @property
    def plot(self) -> Path:
        slug = re.sub(r"\W+", "_", self.config.pipeline.name)
        return DOCS / ("e2e_latency_cdf.png" if self.path is None else f"e2e_latency_{slug}.png")

    @property
    def label(self) -> str:
        return "The embedded demo config" if self.path is None else f"`{self.path}`"


DEMO_SUITE = Suite()


def scenario_config(
    run_dir: Path,
    rate_factor: float,
    realtime_priority: int = 0,
    base: str = DEMO,
    view_save: Path | None = None,
) -> str:
    """The config `base` with a fixed run dir, every sensor's rate_hz multiplied by `rate_factor` and the
    data-path nodes at `realtime_priority`; with `view_save`, the viewer node on, saving there. The TOML
    text is edited line by line, so that its comments stay; the result is parsed back and refused where an
    edit did not take."""
    text = re.sub(r'^run_dir = "[^"]*"', f'run_dir = "{run_dir}"', base, count=1, flags=re.M)
    text = re.sub(
        r"^realtime_priority = \d+", f"realtime_priority = {realtime_priority}", text, count=1, flags=re.M
    )
    text = re.sub(
        r"^rate_hz = ([0-9.]+)", lambda m: f"rate_hz = {float(m.group(1)) * rate_factor:g}", text, flags=re.M
    )
    if view_save is not None:
        if parse_config(text).view.enabled:
            raise SystemExit("view.enabled: already on in the config; --viewer compares without and with it")
        text += f'\n[view]\nenabled = true\nsave = "{view_save}"\n'
    before, after = parse_config(base), parse_config(text)
    if after.pipeline.run_dir != str(run_dir):
        raise SystemExit('pipeline.run_dir: not set; the bench needs it as a line `run_dir = "..."`')
    if after.pipeline.realtime_priority != realtime_priority:
        raise SystemExit(
            "pipeline.realtime_priority: not set; the bench needs it as a line `realtime_priority = N`"
        )
    for old, new in zip(before.streams, after.streams, strict=True):
        if not math.isclose(new.rate_hz, old.rate_hz * rate_factor, rel_tol=1e-5):
            raise SystemExit(
                f"streams {old.name!r}: rate_hz not scaled; the bench needs it as a line `rate_hz = N`"
            )
    return text


@dataclass
class Scenario:
    name: str
    rate_factor: float
    realtime_priority: int = 0
    neighbour: str = ""  # "" or one of NEIGHBOURS, beside the pipeline (--viewer, --neighbours)
    reference_hz: float | None = None  # the reference stream's rate; None in approximate mode
    summary: dict[str, Any] = field(default_factory=dict)
    stats: ResultStats | None = None
    stamps: list[int] = field(default_factory=list)
    cpu: dict[str, list[float]] = field(default_factory=dict)
    load: tuple[float, float] = (0.0, 0.0)  # 1-minute load average at the start and at the end
    since_ns: int = 2**63 - 1  # first result + warm-up


def _node_name(cmdline: list[str]) -> str:
    kind = node_kind(cmdline) or "?"
    stream = cmdline[cmdline.index("--stream") + 1] if "--stream" in cmdline else None
    return f"{kind}:{stream}" if stream else kind


def run_scenario(
    scenario: Scenario, duration_s: float, warmup_s: float, workdir: Path, suite: Suite = DEMO_SUITE
) -> None:
    run_dir = Path(tempfile.mkdtemp(prefix="fp-bench-"))
    # One name per run: `run` refuses a --summary-json that exists, and a mode runs once per round.
    slug = re.sub(r"\W+", "-", scenario.name) + "-" + run_dir.name
    view_save = workdir / f"{slug}.rrd" if scenario.neighbour == "viewer" else None
    text = scenario_config(run_dir, scenario.rate_factor, scenario.realtime_priority, suite.text, view_save)
    config = parse_config(text)
    config_path = workdir / f"{slug}.toml"
    config_path.write_text(text)
    summary_path = workdir / f"{slug}.json"
    reference = config.sync.reference
    scenario.reference_hz = config.stream(reference).rate_hz if reference else None
    cmd = [sys.executable, "-m", "fusion_pipeline.cli", "run", "-c", str(config_path)]
    cmd += ["--warmup", str(warmup_s), "--summary-json", str(summary_path)]
    log = (workdir / f"{slug}.log").open("wb")
    load_start = os.getloadavg()[0]
    psutil.cpu_percent(None)  # prime the machine-wide counter
    # Started in this working directory: the config's relative paths mean what they mean to `run` here.
    supervisor = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    neighbour = _start_neighbour(scenario.neighbour, config, run_dir)
    scenario.stats = ResultStats([s.name for s in config.streams])
    results = Subscriber(f"ipc://{run_dir}/results.sock", topics=["result/"], hwm=10_000)
    procs: dict[int, psutil.Process] = {}
    next_sample = time.monotonic() + 1.0
    try:
        while supervisor.poll() is None:
            sample = results.recv(timeout_ms=50)
            if sample is not None:
                if not scenario.stamps:  # the pipeline is up: the warm-up counts from its first result
                    scenario.stats.since_ns = scenario.since_ns = sample.stamp_ns + int(warmup_s * 1e9)
                scenario.stats.add(sample, time.time_ns())
                scenario.stamps.append(sample.stamp_ns)
            if time.monotonic() >= next_sample:
                next_sample += 1.0
                _sample_cpu(supervisor.pid, procs, scenario, time.time_ns() > scenario.since_ns)
            if time.time_ns() > scenario.since_ns + duration_s * 1e9 and supervisor.returncode is None:
                supervisor.send_signal(signal.SIGTERM)  # measured long enough: stop as an operator would
                supervisor.wait(timeout=30)
    finally:
        if neighbour is not None:
            proc = psutil.Process(neighbour.pid)
            cpu, elapsed = proc.cpu_times(), time.time() - proc.create_time()
            scenario.cpu[f"idle_neighbour:{scenario.neighbour}"] = [100 * (cpu.user + cpu.system) / elapsed]
            neighbour.kill()
            neighbour.wait()
        results.close()
        log.close()
        shutil.rmtree(run_dir, ignore_errors=True)
    scenario.load = (load_start, os.getloadavg()[0])
    scenario.summary = json.loads(summary_path.read_text())


#: The neighbours --neighbours adds beside the viewer node (started by the supervisor, not here).
NEIGHBOURS = ("viewer", "burner", "subscriber")
BURNER_SHARE = 0.12  # about the viewer node's CPU share in the demo
IDLE_NEIGHBOUR = Path(__file__).with_name("idle_neighbour.py")


def _start_neighbour(kind: str, config: Config, run_dir: Path) -> subprocess.Popen[bytes] | None:
    """tools/idle_neighbour.py for `kind` "burner" or "subscriber" (on the drivers' endpoints)."""
    if kind == "burner":
        args = ["burner", str(BURNER_SHARE)]
    elif kind == "subscriber":
        args = ["subscriber", *sorted({config.endpoint(s.endpoint, run_dir) for s in config.streams})]
    else:
        return None
    return subprocess.Popen([sys.executable, str(IDLE_NEIGHBOUR), *args])


MACHINE = "(whole machine)"


def _sample_cpu(root: int, procs: dict[int, psutil.Process], scenario: Scenario, record: bool) -> None:
    """CPU% of the supervisor, every node and the whole machine since the previous sample (100% = one
    core), so that the other work sharing the machine shows beside the pipeline's."""
    whole = psutil.cpu_percent(None) * (os.cpu_count() or 1)
    if record:
        scenario.cpu.setdefault(MACHINE, []).append(whole)
    try:
        tree = [psutil.Process(root), *psutil.Process(root).children()]
    except psutil.NoSuchProcess:
        return
    for proc in tree:
        try:
            known = procs.setdefault(proc.pid, proc)
            name = "supervisor" if proc.pid == root else _node_name(known.cmdline())
            value = known.cpu_percent(None)  # the first call per process primes the counter, returns 0
        except psutil.NoSuchProcess:
            continue
        if record and proc.pid in procs and value:
            scenario.cpu.setdefault(name, []).append(value)


def _window_ratio(s: Scenario) -> tuple[int, int]:
    """(reference stamps with a result, reference stamps on the sensor's grid) from the end of the
    warm-up to the last result. A simulated driver captures on multiples of its period."""
    stamps = sorted({t for t in s.stamps if t >= s.since_ns})
    if not stamps or s.reference_hz is None:
        return len(stamps), 0
    period = round(1e9 / s.reference_hz)
    return len(stamps), stamps[-1] // period - -(-s.since_ns // period) + 1


def _fmt(p: dict[str, float]) -> str:
    return " | ".join(f"{p[k]:.2f}" for k in ("p50", "p95", "p99", "max"))


def _off_grid(config: Config) -> str:
    """A sentence on the discrete streams whose frames miss the reference's stamps, or ""."""
    if config.sync.reference is None:
        return ""
    reference_hz = config.stream(config.sync.reference).rate_hz
    off = [
        f"{s.name} {s.rate_hz:g} Hz"
        for s in config.streams
        if s.modality != "audio" and not (s.rate_hz / reference_hz).is_integer()
    ]
    if not off:
        return ""
    return (
        f" Here {', '.join(off)} capture mostly between the reference's stamps ({reference_hz:g} Hz), "
        "so the best match for a stamp is known only once such a stream's next frame after it arrives: "
        "the set waits up to one period of that stream, or max_wait, whichever is shorter."
    )


def _stage_label(key: str) -> str:
    return f"{key} ({STAGE_NAMES[key]})" if key in STAGE_NAMES else key


def report(scenarios: list[Scenario], command: str, plot: Path | None, suite: Suite = DEMO_SUITE) -> str:
    config = suite.config
    streams = len(config.streams)  # each with its simulated driver (`_suite` refuses external ones)
    lines = [
        suite.section,
        "",
        f"{suite.label} (pipeline {config.pipeline.name!r}) run by `fusion-pipeline run` "
        f"({2 * streams + 2} processes: {streams} simulated sensors, {streams} ingest nodes, the "
        "synchronizer, the inference node; plus the supervisor), measured by a separate result subscriber.",
        "",
        "```",
        command,
        "```",
        "",
        f"Machine: {machine()} shared with other work, Python "
        f"{platform.python_version()}, provider "
        f"({scenarios[0].summary.get('provider')}). Definitions: end_to_end = capture stamp to result "
        "publish; delivered = capture to arrival at the subscriber; model = the onnxruntime call; "
        "sync_wait = from the reference message leaving ingest to the arrival of the message (or "
        "deadline) that completed its set, the designed wait for the other sensors; "
        "overhead = end_to_end - model - sync_wait.",
        "",
    ]
    for s in scenarios:
        assert s.stats is not None
        latency = s.stats.latency()
        got, expected = _window_ratio(s)
        duration = (s.stamps[-1] - s.since_ns) / 1e9 if s.stamps else 0.0
        summary = s.summary
        reference = f"reference {s.reference_hz:g} Hz" if s.reference_hz else "no reference stream"
        results = (
            f"Reference stamps with a result: {got} of {expected} ({100 * got / max(1, expected):.1f} %)."
            if s.reference_hz
            else f"Results: {got}."
        )
        lines += [
            f"### {s.name} (sensors at {s.rate_factor:g}x the config's rates, {reference}, "
            + (f"data-path nodes SCHED_FIFO {s.realtime_priority}, " if s.realtime_priority else "")
            + f"{duration:.0f} s measured after a {summary['warmup_s']:g} s warm-up)",
            "",
            f"{results} Sets full {summary['sets_full']}, partial {summary['sets_partial']} (missing "
            f"{summary['missing'] or 'none'}); inference skipped {summary['inference_skipped']} sets "
            f"(newest-set policy); restarts {summary['restarts_total']}.",
            "",
            "| latency (ms) | n | p50 | p95 | p99 | max |",
            "|---|---|---|---|---|---|",
        ]
        for key in ("end_to_end", "overhead", "model", "sync_wait", "delivered"):
            lines.append(f"| **{key}** | {latency[key]['n']} | {_fmt(latency[key])} |")
        for key, p in latency.items():
            if "->" in key:
                lines.append(f"| {_stage_label(key)} | {p['n']} | {_fmt(p)} |")
        lines += ["", "| process | CPU % median | CPU % p95 |", "|---|---|---|"]
        nodes = sorted(name for name in s.cpu if name != MACHINE)
        for name in nodes:
            values = np.array(s.cpu[name])
            lines.append(f"| {name} | {np.median(values):.1f} | {np.percentile(values, 95):.1f} |")
        pipeline = sum(float(np.mean(s.cpu[n])) for n in nodes)
        whole = float(np.mean(s.cpu.get(MACHINE, [0.0])))
        lines += [
            f"| pipeline, mean of the sum | {pipeline:.1f} | |",
            f"| other work on the machine, mean | {max(0.0, whole - pipeline):.1f} | |",
            "",
            f"Load average {s.load[0]:.2f} at the start, {s.load[1]:.2f} at the end (100 % CPU = one core "
            f"of {os.cpu_count()}).",
            "",
        ]
        if s.rate_factor == 1.0 and suite.path is None:  # the acceptance figures are the demo's
            e2e, overhead = latency["end_to_end"]["p99"], latency["overhead"]["p99"]
            ratio = 100 * got / max(1, expected)
            lines += [
                f"Against the nominal-demo acceptance: results for {ratio:.1f} % of reference stamps "
                f"({'meets' if ratio >= 95 else 'misses'} >= 95 %), end-to-end p99 {e2e:.1f} ms "
                f"({'meets' if e2e <= 100 else 'misses'} <= 100 ms), overhead p99 {overhead:.1f} ms "
                f"({'meets' if overhead <= 5 else 'misses'} <= 5 ms).",
                "",
            ]
        drops = "; ".join(f"{node}: {reasons}" for node, reasons in summary["drops"].items()) or "none"
        lines += [f"Drops by node and reason: {drops}.", ""]
    if plot is not None:
        lines += [f"![latency CDF and stages]({plot.name})", ""]
    lines += [
        "Reading the figures. `capture->ingest_in` includes the simulated drivers' own scheduling: they "
        "run on the same cores as the pipeline, so a starved driver sends late (counted as `late` when a "
        "whole period behind). `sync_wait` is by design: the reference waits for the other sensors' "
        f"message of the same instant, or for max_wait ({config.sync.max_wait_ms:g} ms; the step in the "
        f"CDF) when one is late or missing.{_off_grid(config)} The ingest nodes consume every message in "
        "order, so when the machine cannot keep up "
        "the latency grows up to what the sensor PUB and ingest SUB queues hold (8 messages each, "
        "`transport.DEFAULT_HWM`) before messages are shed (`seq_lost`); the inference node instead "
        "always takes the newest set (`skipped`). Under SCHED_FIFO the data-path nodes' own stages "
        "lose most of their tail (compare `ingest_in->ingest_out`), but `capture->ingest_in` does not: "
        "the simulated drivers stay under the normal scheduler, and a 0.9 MB lidar frame takes about "
        "1 ms over an ipc socket on this machine even when it is idle. What the same processes and "
        "sockets cost with no work at all is in End-to-end floor (`tools/bench_e2e_floor.py`).",
        "",
        "GPU: not yet measured. No GPU was available to this work; `python tools/check_gpu.py` is the "
        "prepared check (CUDA provider in use for the default model, outputs against the CPU's, latency "
        "beside the CPU's, with the card named).",
        "",
    ]
    return "\n".join(lines)


def plot_cdf(scenarios: list[Scenario], path: Path, title: str = "") -> None:
    """The CDFs of end_to_end and overhead, and each stage's p50 and p99, one colour per scenario; ms on
    a log scale, so that an overload's tail leaves the nominal runs readable."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    fig, axes = plt.subplots(1, 3, figsize=(18, 4.5))
    stages = [key for key in STAGE_NAMES if any(key in s.stats.durations for s in scenarios if s.stats)]
    height = 0.8 / len(scenarios)
    for i, s in enumerate(scenarios):
        assert s.stats is not None
        label = f"{s.name} ({s.rate_factor:g}x)"
        for ax, key in zip(axes[:2], ("end_to_end", "overhead"), strict=True):
            values = np.sort(np.array(s.stats.durations[key]) / 1e6)
            fraction = np.arange(1, len(values) + 1) / len(values)
            ax.plot(values, fraction, label=label)
        latency = s.stats.latency()
        rows = np.arange(len(stages)) + i * height
        p50 = [latency[k]["p50"] if k in latency else 0.0 for k in stages]
        p99 = [latency[k]["p99"] if k in latency else 0.0 for k in stages]
        bars = axes[2].barh(rows, p99, height, alpha=0.35, label=f"{label} p99")
        axes[2].barh(rows, p50, height, color=bars.patches[0].get_facecolor()[:3], label=f"{label} p50")
    for ax, name in zip(axes[:2], ("end to end (capture -> publish)", "pipeline overhead"), strict=True):
        ax.set_title(name)
        ax.set_xscale("log")
        ax.set_xlabel("ms")
        ax.set_ylabel("fraction of results")
        ax.grid(alpha=0.3, which="both")
        ax.legend()
    stage_ax = axes[2]
    stage_ax.set_yticks(np.arange(len(stages)) + 0.4 - height / 2, [STAGE_NAMES[k] for k in stages])
    stage_ax.invert_yaxis()
    stage_ax.set_title("per stage: p50 (solid), p99 (light)")
    stage_ax.set_xscale("log")
    stage_ax.set_xlabel("ms")
    stage_ax.grid(alpha=0.3, axis="x", which="both")
    stage_ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    for ax in axes:
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 3.0)))  # 1, 3, 10, 30, ... ms
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-c", "--config", type=Path, help="TOML config to run (default: the embedded demo)")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds per scenario (%(default)s)")
    parser.add_argument("--warmup", type=float, default=5.0, help="start-up seconds left out (%(default)s)")
    parser.add_argument("--no-overload", action="store_true", help="skip the 2x overload scenario")
    parser.add_argument("--no-realtime", action="store_true", help="skip the SCHED_FIFO nominal scenario")
    parser.add_argument(
        "--viewer",
        type=int,
        default=0,
        metavar="ROUNDS",
        help="instead: ROUNDS rounds of the nominal run without and with the viewer node, compared",
    )
    parser.add_argument(
        "--neighbours",
        action="store_true",
        help="with --viewer: each round also with an idle CPU burner and an idle subscriber "
        "(tools/idle_neighbour.py)",
    )
    parser.add_argument("--write", action="store_true", help="update docs/BENCHMARKS.md and the plot")
    args = parser.parse_args()
    suite = DEMO_SUITE if args.config is None else _suite(args.config)
    if args.viewer:
        return viewer_bench(args.viewer, args.duration, args.warmup, suite, args.write, args.neighbours)
    if args.neighbours:
        parser.error("--neighbours: only with --viewer")
    scenarios = [Scenario("nominal", 1.0)]
    if not args.no_realtime:
        scenarios.append(Scenario(f"nominal, SCHED_FIFO {REALTIME_PRIORITY}", 1.0, REALTIME_PRIORITY))
    if not args.no_overload:
        scenarios.append(Scenario("overload", 2.0))
    with tempfile.TemporaryDirectory() as tmp:
        for s in scenarios:
            print(f"running {s.name} for {args.duration:g} s ...", file=sys.stderr)
            run_scenario(s, args.duration, args.warmup, Path(tmp), suite)
    command = "python tools/bench_e2e.py " + " ".join(sys.argv[1:])
    text = report(scenarios, command, suite.plot if args.write else None, suite)
    print(text)
    if args.write:
        plot_cdf(scenarios, suite.plot, f"{suite.config.pipeline.name}: {len(suite.config.streams)} streams")
        replace_section(BENCHMARKS, text)


VIEWER_SECTION = "## End to end with the viewer"


def viewer_bench(
    rounds: int, duration_s: float, warmup_s: float, suite: Suite, write: bool, neighbours: bool = False
) -> None:
    """`rounds` rounds of the nominal run alone, then with the viewer node (and with --neighbours the
    other NEIGHBOURS); the p99s side by side."""
    kinds = ("", *(NEIGHBOURS if neighbours else NEIGHBOURS[:1]))
    runs: list[Scenario] = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            for kind in kinds:
                s = Scenario(f"round {r + 1}, {_arm(kind)}", 1.0, neighbour=kind)
                print(f"running {s.name} for {duration_s:g} s ...", file=sys.stderr)
                run_scenario(s, duration_s, warmup_s, Path(tmp), suite)
                runs.append(s)
    command = "python tools/bench_e2e.py " + " ".join(sys.argv[1:])
    text = viewer_report(runs, command)
    print(text)
    if write:
        replace_section(BENCHMARKS, text)


def _arm(kind: str) -> str:
    return {"": "no viewer", "burner": "idle burner", "subscriber": "idle subscriber"}.get(kind, kind)


def _p(s: Scenario, key: str, q: str) -> float:
    assert s.stats is not None
    return float(s.stats.latency().get(key, {}).get(q, math.nan))


def _values(runs: list[Scenario], kind: str, key: str, q: str) -> list[float]:
    """Quantile `q` of figure `key` in each run with neighbour `kind` ("" = alone)."""
    return [_p(s, key, q) for s in runs if s.neighbour == kind]


def _median(runs: list[Scenario], kind: str, key: str, q: str) -> float:
    return float(np.median(_values(runs, kind, key, q)))


def _max_hz_text(max_hz: float) -> str:
    if max_hz:
        return f"at most `max_hz` ({max_hz:g}) frames a second of each camera, lidar and radar."
    return "every frame it keeps up with (`max_hz` 0, the default)."


def viewer_report(runs: list[Scenario], command: str) -> str:
    """The runs' end-to-end and overhead figures, the viewer's CPU and skips, and the acceptance: the p99
    with the viewer against the range of the p99s without it; with neighbours, each one's median p99."""
    lines = [
        VIEWER_SECTION,
        "",
        f"`{command}` on {machine()}: the embedded demo at its nominal rates, the runs without and with the "
        "viewer node (`[view] enabled`, saving an .rrd) in turn; the viewer drains its own subscriptions "
        "under SCHED_IDLE and shows the newest message per sensor, "
        + _max_hz_text(ViewConfig().max_hz)
        + (
            " The neighbours in the viewer's place (tools/idle_neighbour.py), both under SCHED_IDLE: an "
            f"idle burner spins {BURNER_SHARE:.0%} of each 10 ms and touches no memory; an idle subscriber "
            "subscribes to every driver's socket and drops what it receives."
            if any(s.neighbour in ("burner", "subscriber") for s in runs)
            else ""
        ),
        "",
        "| run | results | end_to_end p50 ms | end_to_end p99 ms | overhead p99 ms | neighbour CPU % | "
        "viewer skipped | load |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in runs:
        assert s.stats is not None
        cpu = s.cpu.get("viewer") if s.neighbour == "viewer" else s.cpu.get(f"idle_neighbour:{s.neighbour}")
        viewer_drops = s.summary.get("drops", {}).get("viewer", {})
        e2e = f"{_p(s, 'end_to_end', 'p50'):.2f} | {_p(s, 'end_to_end', 'p99'):.2f}"
        skipped = viewer_drops.get("skipped", "-") if s.neighbour == "viewer" else "-"
        lines.append(
            f"| {s.name} | {s.stats.timed} | {e2e} "
            f"| {_p(s, 'overhead', 'p99'):.2f} | {'-' if not cpu else f'{np.median(cpu):.1f}'} "
            f"| {skipped} | {s.load[0]:.2f}-{s.load[1]:.2f} |"
        )
    without = _values(runs, "", "end_to_end", "p99")
    with_viewer = _values(runs, "viewer", "end_to_end", "p99")
    spread = max(without) - min(without)
    change = float(np.median(with_viewer) - np.median(without))
    verdict = "met" if abs(change) <= spread else "not met"
    lines += [
        "",
        f"end_to_end p99: without the viewer {', '.join(f'{v:.2f}' for v in without)} ms (spread "
        f"{spread:.2f} ms), with it {', '.join(f'{v:.2f}' for v in with_viewer)} ms; median with minus "
        f"median without {change:+.2f} ms, ratio {np.median(with_viewer) / np.median(without):.2f}. "
        f"Acceptance (the change within the spread of the runs without it): {verdict}.",
    ]
    kinds = [k for k in ("", *NEIGHBOURS) if any(s.neighbour == k for s in runs)]
    if len(kinds) > 2:
        medians = ", ".join(
            f"{_arm(k)} {_median(runs, k, 'end_to_end', 'p99'):.2f} "
            f"({_median(runs, k, 'end_to_end', 'p50'):.2f})"
            for k in kinds
        )
        lines += ["", f"end_to_end p99 (p50), median of the rounds, ms: {medians}."]
    stages = " ".join(
        f"{STAGE_NAMES[key]} {_median(runs, '', key, 'p99'):.2f} / {_median(runs, 'viewer', key, 'p99'):.2f};"
        for key in STAGE_NAMES
    )
    lines += ["", f"Stage p99, median of the runs without / with the viewer, ms: {stages}"]
    p50_without = _values(runs, "", "end_to_end", "p50")
    p50_with = _values(runs, "viewer", "end_to_end", "p50")
    lines += [
        "",
        f"end_to_end p50: median without {np.median(p50_without):.2f} ms (range {min(p50_without):.2f}-"
        f"{max(p50_without):.2f}), with {np.median(p50_with):.2f} ms (range {min(p50_with):.2f}-"
        f"{max(p50_with):.2f}).",
    ]
    return "\n".join(lines) + "\n"


def _suite(path: Path) -> Suite:
    """The config at PATH, refused where the bench cannot run it: it starts the simulated drivers."""
    try:
        suite = Suite(path.read_text(), path)
        config = suite.config
    except OSError as exc:
        raise SystemExit(f"{path}: cannot read config: {exc.strerror}") from exc
    except FusionError as exc:  # the message names the file and the key
        raise SystemExit(str(exc)) from exc
    external = [f"streams[{i}] ({s.name})" for i, s in enumerate(config.streams) if s.driver != "sim"]
    if external:
        raise SystemExit(
            f"{path}: {', '.join(external)}: driver = 'external'; the bench runs sim drivers only"
        )
    return suite


if __name__ == "__main__":
    main()
