"""Where the pipeline's latency tails come from: a scheduler trace of the live demo, with `perf sched`.

    sudo python tools/sched_trace.py --seconds 15 --viewer      # needs perf and root (or CAP_PERFMON)

Starts `fusion-pipeline run` on the embedded demo (or -c CONFIG) at its nominal rates, waits --warmup
seconds, records every context switch on every CPU for --seconds (`perf sched record -a`), and reads the
trace back with `perf sched timehist`. For each node (each thread of it counted under its process) it
reports the CPU it used and its wake-up delays: the time from being woken (a message arrived, a timer
fired) to running. Then, for every wake-up of a data-path thread (ingest, synchronizer, inference,
composed) that waited more than --blocked-ms, which task held that CPU meanwhile, summed: what the tail
is made of. With --viewer the viewer node runs beside the pipeline (`[view] enabled`, saving an .rrd); with
--composed the data path is one node (`pipeline.composition = "composed"`).

The pipeline runs from the current directory's checkout (`cd OTHER && python PATH/tools/sched_trace.py`
traces another). The report is Markdown
on stdout; --out keeps the trace and the node list.
"""

from __future__ import annotations

import argparse
import bisect
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from bench_e2e import DEMO, scenario_config
from bench_e2e_floor import composed

from fusion_pipeline.node import node_kind

DATA_PATH = ("ingest", "synchronizer", "inference", "composed")
# A slice line of `perf sched timehist`: time, [cpu], comm[tid/pid] or comm[pid] (or <idle>),
# wait time, scheduling delay, run time (ms).
SLICE = re.compile(
    r"\s*(?P<end>[\d.]+)\s+\[(?P<cpu>\d+)\]\s+(?P<comm>.+?)(?:\[(?P<tid>\d+)(?:/(?P<pid>\d+))?\])?"
    r"\s+(?P<wait>[\d.]+)\s+(?P<delay>[\d.]+)\s+(?P<run>[\d.]+)\s*$"
)


@dataclass(frozen=True)
class Slice:
    """One stretch a thread ran on a CPU, and how long it had waited for that CPU once woken."""

    end_s: float
    cpu: int
    comm: str
    tid: int
    pid: int
    delay_ms: float
    run_ms: float

    @property
    def start_s(self) -> float:
        return self.end_s - self.run_ms / 1e3


def parse_timehist(text: str) -> list[Slice]:
    slices = []
    for line in text.splitlines():
        match = SLICE.match(line)
        if match is None:
            continue  # the header and perf's notes
        tid = int(match["tid"] or 0)
        slices.append(
            Slice(
                float(match["end"]),
                int(match["cpu"]),
                match["comm"].strip(),
                tid,
                int(match["pid"] or tid),
                float(match["delay"]),
                float(match["run"]),
            )
        )
    return slices


def node_roles(run_dir: Path) -> dict[int, str]:
    """pid -> `kind` or `kind:stream` for every node of the run (by its --run-dir argument)."""
    roles = {}
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:  # gone, or not a process
            continue
        kind = node_kind(argv)
        if kind is None or str(run_dir) not in argv:
            continue
        stream = argv[argv.index("--stream") + 1] if "--stream" in argv else ""
        roles[int(proc.name)] = f"{kind}:{stream}" if stream else kind
    return roles


def role_of(piece: Slice, roles: dict[int, str]) -> str:
    if piece.comm == "<idle>":
        return "<idle>"
    role = roles.get(piece.pid)
    if role is None:
        return f"other: {piece.comm}"
    return role if piece.tid == piece.pid else f"{role} ({piece.comm} thread)"


def per_node(slices: list[Slice], roles: dict[int, str]) -> list[str]:
    """Markdown rows: each node's CPU share and wake-up delays, its threads together."""
    span_s = slices[-1].end_s - slices[0].start_s
    delays: dict[str, list[float]] = defaultdict(list)
    run_ms: Counter[str] = Counter()
    for piece in slices:
        if piece.pid in roles:
            delays[roles[piece.pid]].append(piece.delay_ms)
            run_ms[roles[piece.pid]] += piece.run_ms
    rows = []
    for role, _ in run_ms.most_common():
        d = np.array(delays[role])
        p50, p99 = np.percentile(d, [50, 99])
        share = 100 * run_ms[role] / 1e3 / span_s
        rows.append(f"| {role} | {share:.1f} | {len(d)} | {p50:.3f} | {p99:.3f} | {d.max():.3f} |")
    return rows


def blockers(slices: list[Slice], roles: dict[int, str], blocked_ms: float) -> tuple[int, Counter[str]]:
    """For each data-path wake-up that waited over `blocked_ms`: the tasks that ran on its CPU while it
    waited, and for how long (ms). How many such waits."""
    by_cpu: dict[int, list[Slice]] = defaultdict(list)
    for piece in slices:
        by_cpu[piece.cpu].append(piece)
    held: Counter[str] = Counter()
    waits = 0
    for piece in slices:
        if roles.get(piece.pid, "").split(":")[0] not in DATA_PATH or piece.delay_ms <= blocked_ms:
            continue
        waits += 1
        woken, started = piece.start_s - piece.delay_ms / 1e3, piece.start_s
        on_cpu = by_cpu[piece.cpu]  # in time order, one after the other
        for other in on_cpu[bisect.bisect_right(on_cpu, woken, key=lambda s: s.end_s) :]:
            if other.start_s >= started:
                break
            held[role_of(other, roles)] += (min(other.end_s, started) - max(other.start_s, woken)) * 1e3
    return waits, held


def trace(
    config_text: str, workdir: Path, warmup_s: float, seconds: float
) -> tuple[list[Slice], dict[int, str]]:
    config = workdir / "trace.toml"
    config.write_text(config_text)
    log = (workdir / "run.log").open("wb")
    command = [sys.executable, "-m", "fusion_pipeline.cli", "run", "-c", str(config)]
    supervisor = subprocess.Popen(
        [*command, "--duration", str(warmup_s + seconds + 5)], stdout=log, stderr=log
    )
    try:
        time.sleep(warmup_s)
        if supervisor.poll() is not None:
            raise SystemExit(f"the pipeline exited ({supervisor.returncode}); see {workdir / 'run.log'}")
        roles = node_roles(workdir / "run") | {supervisor.pid: "supervisor"}
        data = workdir / "perf.data"
        record = ["perf", "sched", "record", "-a", "-o", str(data), "--", "sleep", str(seconds)]
        recorded = subprocess.run(record, capture_output=True, text=True)
        if recorded.returncode != 0:
            raise SystemExit(f"perf sched record: {recorded.stderr.strip()} (it needs root or CAP_PERFMON)")
    finally:
        supervisor.terminate()
        supervisor.wait(30)
        log.close()
    timehist = subprocess.run(
        ["perf", "sched", "timehist", "-i", str(data)], check=True, capture_output=True, text=True
    ).stdout
    (workdir / "nodes.txt").write_text("".join(f"{pid} {role}\n" for pid, role in sorted(roles.items())))
    return parse_timehist(timehist), roles


def report(slices: list[Slice], roles: dict[int, str], blocked_ms: float, label: str) -> str:
    waits, held = blockers(slices, roles, blocked_ms)
    lines = [
        f"### {label}",
        "",
        "| node | CPU % | wake-ups | wake-up delay p50 ms | p99 ms | max ms |",
        "|---|---:|---:|---:|---:|---:|",
        *per_node(slices, roles),
        "",
        f"{waits} data-path wake-ups waited over {blocked_ms:g} ms; what ran on their CPU meanwhile "
        "(ms, summed):",
        "",
        "| task | ms |",
        "|---|---:|",
        *(f"| {task} | {ms:.1f} |" for task, ms in held.most_common(12)),
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-c", "--config", type=Path, help="TOML config (default: the embedded demo)")
    parser.add_argument("--seconds", type=float, default=15.0, help="how long to trace (15)")
    parser.add_argument("--warmup", type=float, default=10.0, help="seconds after the start, untraced (10)")
    parser.add_argument("--viewer", action="store_true", help="the viewer node beside the pipeline")
    parser.add_argument(
        "--composed", action="store_true", help='with pipeline.composition = "composed" (one data-path node)'
    )
    parser.add_argument("--blocked-ms", type=float, default=0.3, help="a wake-up delay worth blaming (0.3)")
    parser.add_argument("--out", type=Path, help="keep the trace here (a new directory)")
    args = parser.parse_args()
    if shutil.which("perf") is None:
        raise SystemExit("perf: not found (Debian: apt-get install linux-perf)")
    if args.out is not None and args.out.exists():
        raise SystemExit(f"--out {args.out}: exists; give a new directory")
    workdir = Path(tempfile.mkdtemp(prefix="fp-sched-")) if args.out is None else args.out
    workdir.mkdir(parents=True, exist_ok=True)
    run_dir = workdir / "run"
    run_dir.mkdir(mode=0o700)
    base = DEMO if args.config is None else args.config.read_text()
    base = composed(base) if args.composed else base
    text = scenario_config(run_dir, 1.0, 0, base, workdir / "view.rrd" if args.viewer else None)
    try:
        slices, roles = trace(text, workdir, args.warmup, args.seconds)
    finally:
        if args.out is None:
            shutil.rmtree(workdir, ignore_errors=True)
    mode = "composed" if args.composed else "processes"
    viewer = "with" if args.viewer else "without"
    label = f"{mode}, {viewer} the viewer, {args.seconds:g} s, {os.uname().release}"
    print(report(slices, roles, args.blocked_ms, label))


if __name__ == "__main__":
    main()
