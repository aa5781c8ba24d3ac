"""Soak test of a live pipeline: does any process's memory, open files or threads grow over time?

    python tools/soak.py --duration 1200 --warmup 120 --interval 5 --plot docs/soak.png
    python tools/soak.py -c package:surround.toml --composition composed --duration 3600 --write

Runs `fusion-pipeline run` on a config (-c: a file or package:NAME; default the embedded demo), with
``pipeline.composition`` set by --composition (default: the config's own), for --duration seconds, and
every --interval seconds reads, for the supervisor and each process it started (drivers, ingest,
synchronizer, inference or the composed node, recorder, viewer, and anything those started), found in
the process tree of the supervisor it started: VmRSS, VmHWM and Threads from /proc/PID/status, the
number of entries of /proc/PID/fd and the CPU time (utime + stime) from /proc/PID/stat. A process is
one series from its start to its end: a node the supervisor restarts (a new pid) gets a new series,
and the restart is listed under the table.

The first --warmup seconds of each process's life (imports, model load, arenas, first caches) are left
out; on the rest a least-squares line is fitted to the RSS. A process is flagged when its RSS grows
faster than --max-growth-kib-per-min, over the whole measured part and still over its second half (a
one-off step, a cache filled once, is no leak), by 1 MiB at least (less is noise in a short run); or
when its fds or threads keep growing: the lowest count of each third of the measured part is higher
than the third's before. The exit code is 1 when a process is flagged, 2 when the pipeline fails
(exits early, nothing sampled).

The report is a Markdown table on stdout; --write prints it as a docs/BENCHMARKS.md section ("## Soak")
to paste, and edits no file. --plot writes a PNG of each process's RSS over time. The supervisor runs in
a process group of its own and dies with this tool (PR_SET_PDEATHSIG); Ctrl-C or SIGTERM stops it (it
stops its nodes), and the report covers what was sampled until then.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import numpy as np
from benchdoc import machine

from fusion_pipeline.config import SHIPPED, Config, load_config, parse_config, read_config_text
from fusion_pipeline.errors import FusionError
from fusion_pipeline.lifetime import die_with_parent
from fusion_pipeline.node import node_kind, node_name

SECTION = "## Soak"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
STOP_WAIT_S = 30.0  # the supervisor's own stop takes 3 s per node group at most
BACKSTOP_S = 60.0  # the supervisor's own --duration: it stops itself this long after ours
MIN_GROWTH_KIB = 1024  # a fitted growth smaller than this over the whole window is noise, whatever its slope
COMPOSITIONS = ("processes", "composed")


# -- one process, read from /proc -------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    t_s: float  # since the supervisor started
    rss_kib: int
    hwm_kib: int  # VmHWM: the peak RSS of the process so far
    threads: int
    fds: int
    cpu_s: float  # user + system


@dataclass(frozen=True)
class ProcInfo:
    pid: int
    ppid: int
    start_ticks: int  # with the pid, names one process: a pid reused later is another
    argv: list[str]
    comm: str


def _stat_fields(pid: int) -> tuple[str, list[str]]:
    """/proc/PID/stat as (comm, the fields after it); comm may hold spaces and parentheses."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    head, _, rest = raw.rpartition(")")
    return head.partition("(")[2], rest.split()


def proc_info(pid: int) -> ProcInfo | None:
    """The identity of process `pid`, None if it is gone (or not ours to read)."""
    try:
        comm, fields = _stat_fields(pid)
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return None
    # fields[0] is field 3 of proc(5): ppid is field 4, starttime field 22.
    return ProcInfo(pid, int(fields[1]), int(fields[19]), [a for a in argv if a], comm)


def read_sample(pid: int, start_ticks: int, t_s: float) -> Sample | None:
    """One sample of process `pid`, None if it has exited (or the pid now names another process)."""
    try:
        _, fields = _stat_fields(pid)
        if int(fields[19]) != start_ticks:
            return None
        status = dict(
            line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line
        )
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except (OSError, ValueError):
        return None
    if "VmRSS" not in status:  # a zombie: exited, not yet reaped
        return None
    return Sample(
        t_s=t_s,
        rss_kib=int(status["VmRSS"].split()[0]),
        hwm_kib=int(status["VmHWM"].split()[0]),
        threads=int(status["Threads"]),
        fds=fds,
        cpu_s=(int(fields[11]) + int(fields[12])) / CLOCK_TICKS,
    )


def descendants(root: int) -> list[ProcInfo]:
    """Every live process under `root` in the process tree, parents before their children."""
    procs = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (info := proc_info(int(entry))) is not None:
            procs[info.pid] = info
    found, frontier = [], [root]
    while frontier:
        children = [p for p in procs.values() if p.ppid in frontier]
        found += children
        frontier = [p.pid for p in children]
    return found


def role(info: ProcInfo, parent_role: str | None) -> str:
    """The name a process goes by: its node's name (as in its heartbeats and `fusion-pipeline status`)
    for ``python -m fusion_pipeline.nodes.KIND [--stream S]``, else what started it and its command name."""
    kind = node_kind(info.argv)
    if kind is not None:
        argv = info.argv
        stream = argv[argv.index("--stream") + 1] if "--stream" in argv[:-1] else None
        return node_name(kind, stream)
    return f"{parent_role or '?'}/{info.comm}"


@dataclass
class Series:
    """The samples of one process: a restarted node is a new Series under the same name."""

    name: str
    pid: int
    start_ticks: int
    instance: int  # 1 for a node's first process, 2 after its first restart, ...
    samples: list[Sample] = field(default_factory=list)
    ended_s: float | None = None  # when it was first seen gone

    @property
    def label(self) -> str:
        return self.name if self.instance == 1 else f"{self.name} #{self.instance}"


class Sampler:
    """The series of every process under the supervisor `root`, and the restarts seen."""

    def __init__(self, root: int) -> None:
        self.root = root
        root_info = proc_info(root)
        assert root_info is not None, "the supervisor was just started"
        self.series: dict[tuple[int, int], Series] = {
            (root, root_info.start_ticks): Series("supervisor", root, root_info.start_ticks, 1)
        }
        self.notes: list[str] = []

    def live(self) -> Iterator[Series]:
        return (s for s in self.series.values() if s.ended_s is None)

    def sample(self, t_s: float) -> None:
        roles = {self.root: "supervisor"}
        for info in descendants(self.root):
            key = (info.pid, info.start_ticks)
            if key not in self.series:
                name = role(info, roles.get(info.ppid))
                before = [s for s in self.series.values() if s.name == name]
                self.series[key] = Series(name, info.pid, info.start_ticks, len(before) + 1)
                if before:
                    self.notes.append(
                        f"{name}: new process at {t_s:.0f} s (pid {before[-1].pid} -> {info.pid}); "
                        "its own series"
                    )
            roles[info.pid] = self.series[key].name
        for s in list(self.live()):
            sample = read_sample(s.pid, s.start_ticks, t_s)
            if sample is None:
                s.ended_s = t_s
                if s.name != "supervisor":
                    self.notes.append(f"{s.label} (pid {s.pid}) ended at {t_s:.0f} s")
            else:
                s.samples.append(sample)

    def pids(self) -> list[tuple[int, int]]:
        return list(self.series)


# -- analysis -------------------------------------------------------------------------------------------


def slope_per_min(t_s: np.ndarray, values: np.ndarray) -> float:
    """Least-squares slope of `values` over time, per minute."""
    return float(np.polyfit(t_s / 60.0, values, 1)[0])


def keeps_growing(values: list[int]) -> bool:
    """Whether a count rises from third to third of the window, judged on each third's lowest value:
    a passing spike or a one-off step (a pool filled once) is not growth, a leak is."""
    if len(values) < 6:
        return False
    lows = [min(part) for part in np.array_split(np.array(values), 3)]
    return bool(lows[0] < lows[1] < lows[2])


@dataclass(frozen=True)
class Row:
    label: str
    pid: int
    samples: int  # in the measured part
    rss_start_kib: int
    rss_end_kib: int
    slope_kib_min: float | None  # None: too few samples to fit
    late_slope_kib_min: float | None  # over the second half of the measured part
    hwm_kib: int
    fds_max: int
    fds_growth: int
    threads_max: int
    threads_growth: int
    cpu_percent: float
    flags: tuple[str, ...]


def analyse(s: Series, warmup_s: float, max_growth: float) -> Row | None:
    """The figures of one process over its measured part: from `warmup_s` after its first sample (the
    supervisor's start for the processes of the first start), to its last sample. None when it has
    fewer than three samples there."""
    first = s.samples[0].t_s if s.samples else 0.0
    kept = [x for x in s.samples if x.t_s >= max(warmup_s, first + warmup_s if s.instance > 1 else 0.0)]
    if len(kept) < 3:
        return None
    t = np.array([x.t_s for x in kept])
    rss = np.array([x.rss_kib for x in kept], dtype=np.float64)
    slope = slope_per_min(t, rss) if t[-1] > t[0] else None
    late = [i for i, x in enumerate(kept) if x.t_s >= (t[0] + t[-1]) / 2]
    late_slope = slope_per_min(t[late], rss[late]) if len(late) >= 3 else None
    fds, threads = [x.fds for x in kept], [x.threads for x in kept]
    flags = []
    steady = late_slope is None or late_slope > max_growth / 2
    grown_kib = 0.0 if slope is None else slope * (t[-1] - t[0]) / 60
    if slope is not None and slope > max_growth and steady and grown_kib >= MIN_GROWTH_KIB:
        flags.append(f"RSS +{slope:.0f} KiB/min")
    if keeps_growing(fds):
        flags.append("fds growing")
    if keeps_growing(threads):
        flags.append("threads growing")
    span = kept[-1].t_s - kept[0].t_s
    return Row(
        label=s.label,
        pid=s.pid,
        samples=len(kept),
        rss_start_kib=kept[0].rss_kib,
        rss_end_kib=kept[-1].rss_kib,
        slope_kib_min=slope,
        late_slope_kib_min=late_slope,
        hwm_kib=max(x.hwm_kib for x in kept),
        fds_max=max(fds),
        fds_growth=fds[-1] - fds[0],
        threads_max=max(threads),
        threads_growth=threads[-1] - threads[0],
        cpu_percent=100 * (kept[-1].cpu_s - kept[0].cpu_s) / span if span > 0 else 0.0,
        flags=tuple(flags),
    )


def _mib(kib: float) -> str:
    return f"{kib / 1024:.1f}"


def _signed(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:+.{digits}f}"


def table(rows: list[Row]) -> str:
    lines = [
        "| process | pid | samples | RSS start MiB | RSS end MiB | RSS slope KiB/min (2nd half) "
        "| peak RSS MiB | fds max (growth) | threads max (growth) | CPU % | flagged |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.label} | {r.pid} | {r.samples} | {_mib(r.rss_start_kib)} | {_mib(r.rss_end_kib)} "
            f"| {_signed(r.slope_kib_min)} ({_signed(r.late_slope_kib_min)}) | {_mib(r.hwm_kib)} "
            f"| {r.fds_max} ({r.fds_growth:+d}) | {r.threads_max} ({r.threads_growth:+d}) "
            f"| {r.cpu_percent:.1f} | {', '.join(r.flags) or '-'} |"
        )
    return "\n".join(lines)


# -- the pipeline ---------------------------------------------------------------------------------------


def with_composition(text: str, composition: str) -> str:
    """The config `text` with ``pipeline.composition`` set: its line replaced, or one added to the
    [pipeline] table (a new table where it has none); refused where the edit did not take."""
    line = f'composition = "{composition}"'
    if re.search(r"^composition\s*=", text, re.M):
        edited = re.sub(r"^composition\s*=.*$", line, text, count=1, flags=re.M)
    elif re.search(r"^\[pipeline\]\s*$", text, re.M):
        edited = re.sub(r"^\[pipeline\]\s*$", f"[pipeline]\n{line}", text, count=1, flags=re.M)
    else:
        edited = f"{text.rstrip()}\n\n[pipeline]\n{line}\n"
    if parse_config(edited).pipeline.composition != composition:
        raise SystemExit(f"pipeline.composition: could not set it to {composition!r} in the config's text")
    return edited


def pipeline_command(
    config: str | None, composition: str | None, duration_s: float, workdir: Path
) -> tuple[list[str], Config]:
    """The `fusion-pipeline run` command line for the config (None: the embedded demo), through a copy in
    `workdir` only where --composition changes it, and the config it runs."""
    try:
        loaded = load_config(config)
        path = config
        if composition is not None and composition != loaded.pipeline.composition:
            text = read_config_text(config) if config else read_config_text(f"{SHIPPED}demo.toml")
            copy = workdir / "soak.toml"
            # A relative path in a config is read from the working directory, not the file's: the copy
            # means what the original does.
            copy.write_text(with_composition(text, composition))
            path, loaded = str(copy), load_config(copy)
    except FusionError as exc:  # the message names the file and the key
        raise SystemExit(str(exc)) from exc
    command = [sys.executable, "-m", "fusion_pipeline.cli", "run"]
    command += ["-c", path] if path else []
    command += ["--duration", f"{duration_s + BACKSTOP_S:g}", "--summary-json", str(workdir / "summary.json")]
    return command, loaded


def _supervisor_preexec() -> None:
    """Between fork and exec: a process group of its own (Ctrl-C reaches this tool, which stops the
    supervisor, which stops its nodes), and a SIGTERM from the kernel should this tool die."""
    os.setpgid(0, 0)
    die_with_parent()


def stop_pipeline(supervisor: subprocess.Popen[bytes], sampler: Sampler | None) -> None:
    """SIGTERM to the supervisor (it stops its nodes), SIGKILL after STOP_WAIT_S; then SIGKILL to any
    process of the run still alive (same pid and start time as sampled: never a reused pid)."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut this short
    try:
        if supervisor.poll() is None:
            supervisor.send_signal(signal.SIGTERM)
            try:
                supervisor.wait(timeout=STOP_WAIT_S)
            except subprocess.TimeoutExpired:
                supervisor.kill()
                supervisor.wait()
        for pid, start_ticks in sampler.pids() if sampler else []:
            info = proc_info(pid)
            if info is not None and info.start_ticks == start_ticks:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
    finally:
        signal.signal(signal.SIGINT, previous)


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # SIGTERM to this tool: stop the run as Ctrl-C does


def soak(command: list[str], duration_s: float, interval_s: float, log: Path) -> tuple[Sampler, float, bool]:
    """Run the pipeline and sample its processes until `duration_s` or Ctrl-C: the sampler, the time
    sampled (s) and whether it ran the whole duration."""
    signal.signal(signal.SIGTERM, _terminate)
    with log.open("wb") as out:
        supervisor = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=_supervisor_preexec,
        )
    started = time.monotonic()
    sampler: Sampler | None = None
    t_s, complete = 0.0, False
    try:
        sampler = Sampler(supervisor.pid)
        next_at = started
        while (t_s := time.monotonic() - started) < duration_s:
            if supervisor.poll() is not None:
                tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
                raise SystemExit(f"the pipeline exited ({supervisor.returncode}) after {t_s:.0f} s:\n{tail}")
            sampler.sample(t_s)
            next_at += interval_s
            time.sleep(max(0.0, next_at - time.monotonic()))
        complete = True
    except KeyboardInterrupt:
        print(f"stopped after {t_s:.0f} s; reporting what was sampled", file=sys.stderr)
    finally:
        stop_pipeline(supervisor, sampler)
    if sampler is None:
        raise SystemExit("stopped before the first sample")
    return sampler, t_s, complete


# -- output ---------------------------------------------------------------------------------------------


def plot(series: list[Series], warmup_s: float, path: Path, title: str) -> None:
    """RSS of each process over time, and its change since its measured part began."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (absolute, change) = plt.subplots(1, 2, figsize=(16, 6))
    colours = plt.get_cmap("tab20").colors  # one colour per process up to 20 (the default cycle has 10)
    for i, s in enumerate(x for x in series if x.samples):
        t = np.array([x.t_s for x in s.samples]) / 60
        rss = np.array([x.rss_kib for x in s.samples]) / 1024
        colour = colours[i % len(colours)]
        absolute.plot(t, rss, label=s.label, lw=1, color=colour)
        measured = t >= warmup_s / 60
        if measured.any():
            change.plot(t[measured], rss[measured] - rss[measured][0], color=colour, lw=1)
    for ax, ylabel in ((absolute, "RSS MiB"), (change, "RSS change since the warm-up, MiB")):
        ax.axvline(warmup_s / 60, color="grey", ls="--", lw=0.8)
        ax.set_xlabel("minutes since the start")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    absolute.set_yscale("log")
    absolute.set_title("RSS per process (log scale); dashed: end of the warm-up")
    change.set_title("RSS change over the measured part")
    fig.legend(loc="center right", fontsize="small")
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0, 0.84, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_samples(series: list[Series], path: Path) -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["t_s", "process", "pid", "rss_kib", "hwm_kib", "threads", "fds", "cpu_s"])
        for s in series:
            for x in s.samples:
                writer.writerow(
                    [f"{x.t_s:.2f}", s.label, s.pid, x.rss_kib, x.hwm_kib, x.threads, x.fds, x.cpu_s]
                )


def run_line(summary: dict[str, object]) -> str:
    """The supervisor's own account of the run: results, restarts."""
    if not summary:
        return "The supervisor wrote no summary."
    restarts = summary.get("restarts_total", "?")
    return f"The supervisor's summary: {summary.get('results', '?')} results, {restarts} node restarts."


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-c", "--config", help="config file or package:NAME (default: the embedded demo)")
    parser.add_argument(
        "--composition", choices=COMPOSITIONS, help="set pipeline.composition (default: the config's own)"
    )
    parser.add_argument("--duration", type=float, default=1200.0, help="seconds to run (%(default)s)")
    parser.add_argument(
        "--warmup",
        type=float,
        default=120.0,
        help="seconds of each process's start left out of the fit (%(default)s)",
    )
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between samples (%(default)s)")
    parser.add_argument(
        "--max-growth-kib-per-min",
        type=float,
        default=256.0,
        help="flag a process whose RSS grows faster than this (%(default)s KiB/min; 15 MiB an hour)",
    )
    parser.add_argument("--plot", type=Path, help="write a PNG of the RSS per process over time here")
    parser.add_argument("--samples", type=Path, help="write every sample here (CSV)")
    parser.add_argument(
        "--write",
        action="store_true",
        help="print the report as a docs/BENCHMARKS.md section (no file edited)",
    )
    args = parser.parse_args()
    if args.interval <= 0 or args.duration <= args.warmup:
        parser.error("--interval must be > 0 and --duration longer than --warmup")
    with tempfile.TemporaryDirectory(prefix="fp-soak-") as tmp:
        workdir = Path(tmp)
        command, config = pipeline_command(args.config, args.composition, args.duration, workdir)
        print(
            f"running {config.pipeline.name} ({config.pipeline.composition}) for {args.duration:g} s",
            file=sys.stderr,
        )
        sampler, sampled_s, complete = soak(command, args.duration, args.interval, workdir / "run.log")
        summary_path = workdir / "summary.json"
        summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    # A restarted node's series next to its first one, in the order the processes appeared.
    order = {name: i for i, name in reversed(list(enumerate(s.name for s in sampler.series.values())))}
    series = sorted(sampler.series.values(), key=lambda s: (order[s.name], s.instance))
    rows = [r for s in series if (r := analyse(s, args.warmup, args.max_growth_kib_per_min)) is not None]
    if not rows:
        raise SystemExit(f"nothing sampled past the warm-up ({sampled_s:.0f} s run)")
    flagged = [r for r in rows if r.flags]
    tool = "python tools/soak.py " + " ".join(sys.argv[1:])
    lines = [
        f"{config.pipeline.name}, composition {config.pipeline.composition}: {sampled_s:.0f} s"
        f"{'' if complete else ' (stopped early)'}, sampled every {args.interval:g} s, the first "
        f"{args.warmup:g} s of each process left out; threshold {args.max_growth_kib_per_min:g} KiB/min.",
        "",
        table(rows),
        "",
        "Flagged: "
        + ("; ".join(f"{r.label}: {', '.join(r.flags)}" for r in flagged) if flagged else "none")
        + ".",
        run_line(summary),
        *(f"- {note}" for note in sampler.notes),
    ]
    if args.write:
        lines = [
            SECTION,
            "",
            "```",
            tool,
            "```",
            "",
            f"Machine: {machine()} shared with other work. RSS start/end: the first and last samples of "
            "the measured part; slope: least squares over it (in brackets over its second half); "
            "CPU %: of one core over it.",
            "",
            *lines,
            *(["", f"![RSS per process]({args.plot.name})"] if args.plot else []),
        ]
    print("\n".join(lines))
    if args.plot:
        plot(series, args.warmup, args.plot, f"{config.pipeline.name} ({config.pipeline.composition}): RSS")
    if args.samples:
        write_samples(series, args.samples)
    sys.exit(1 if flagged else 0)


if __name__ == "__main__":
    main()
