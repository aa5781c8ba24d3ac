"""CPU the viewer's views cost per message, by kind: `view.scene.Scene` fed a demo log and its results in
stamp order, saving an .rrd as the viewer node does (no sockets, no other process beside it).

    python tools/bench_view.py [--duration 10] [--rounds 3] [--against CHECKOUT]

The log is made by tools/make_sample_log.py and its results by `fusion-pipeline replay --offline`, once.
Each round measures in a fresh process the CPU time of the calling thread around every `Scene.show`
(rerun's own threads are not in it; the live node adds its sockets and their decoding). --against runs
the same rounds with CHECKOUT's package first on the path (a `git worktree` of an older commit), each
contender going first in turn, and reports the ratio of the two, round by round.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def measure(log: Path, results: Path, rrd: Path) -> dict[str, list[int]]:
    """CPU ns of each `Scene.show`, per message modality."""
    import rerun as rr

    from fusion_pipeline.config import load_config
    from fusion_pipeline.logs import LogReader
    from fusion_pipeline.view.scene import Scene

    recording = rr.RecordingStream("bench-view")
    recording.save(rrd)
    scene = Scene(load_config(None), recording)
    samples = sorted((m.sample for path in (log, results) for m in LogReader(path)), key=lambda s: s.stamp_ns)
    cpu_ns: dict[str, list[int]] = defaultdict(list)
    for sample in samples:
        start = time.thread_time_ns()
        scene.show(sample, sample.stamp_ns + 5_000_000)  # received 5 ms after capture
        cpu_ns[sample.modality].append(time.thread_time_ns() - start)
    recording.flush()
    return cpu_ns


def run_round(log: Path, results: Path, rrd: Path, checkout: Path | None) -> dict[str, list[int]]:
    """One measurement in a fresh process, with `checkout`'s package first on the path if given."""
    env = dict(os.environ)
    if checkout is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(checkout), env.get("PYTHONPATH", "")]))
    command = [sys.executable, __file__, "--measure", str(log), str(results), str(rrd)]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(
            f"bench_view.py: the measurement{f' in {checkout}' if checkout else ''} failed:\n{done.stderr}"
        )
    rrd.unlink()
    return json.loads(done.stdout)


def _share(cpu_ns: list[int], duration_s: float) -> float:
    """CPU as a percentage of one core over the log's duration."""
    return 100 * sum(cpu_ns) / 1e9 / duration_s


def report(runs: dict[str, list[dict[str, list[int]]]], duration_s: float, command: str) -> str:
    """Per kind and contender: median CPU per message and share of a core at the log's rates (medians
    over the rounds, with their range); with two contenders, the ratio of the first's median per
    message to the second's, round by round."""
    names = list(runs)
    kinds = sorted({kind for rounds in runs.values() for r in rounds for kind in r})
    columns = [f"{name}: µs/msg" for name in names] + [f"{name}: % of a core" for name in names]
    if len(names) == 2:
        columns.append("µs/msg ratio per round")
    lines = [
        f"```\n{command}\n```",
        "",
        "| kind | messages | " + " | ".join(columns) + " |",
        "|---|---:|" + "---:|" * len(columns),
    ]

    def spread(values: list[float], digits: int) -> str:
        return f"{np.median(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"

    for kind in [*kinds, "all"]:
        per_message = {n: [float(np.median(r[kind])) / 1e3 for r in runs[n]] for n in names if kind != "all"}
        shares = {
            n: [
                _share([t for k in r for t in r[k]] if kind == "all" else r[kind], duration_s)
                for r in runs[n]
            ]
            for n in names
        }
        first = runs[names[0]][0]
        count = sum(map(len, first.values())) if kind == "all" else len(first[kind])
        row = [kind, str(count)]
        row += [spread(per_message[n], 0) if per_message else "-" for n in names]
        row += [spread(shares[n], 2) for n in names]
        if len(names) == 2:
            ratios = (
                [a / b for a, b in zip(*per_message.values(), strict=True)]
                if per_message
                else [a / b for a, b in zip(*shares.values(), strict=True)]
            )
            row.append(spread(ratios, 2))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of demo log (default 10)")
    parser.add_argument("--rounds", type=int, default=3, help="measurements per contender (default 3)")
    parser.add_argument("--against", type=Path, help="a checkout whose package is the baseline")
    parser.add_argument("--measure", nargs=3, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rounds < 1 or not args.duration > 0:
        parser.error("--rounds must be at least 1 and --duration positive")
    if args.measure:
        print(json.dumps(measure(*args.measure)))
        return
    if args.against is not None and not (args.against / "fusion_pipeline" / "view" / "scene.py").is_file():
        parser.error(f"--against: {args.against} holds no fusion_pipeline/view/scene.py")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        log, results = workdir / "demo.mcap", workdir / "demo.results.mcap"
        make = [sys.executable, str(ROOT / "tools" / "make_sample_log.py"), "-o", str(log)]
        replay = [sys.executable, "-m", "fusion_pipeline.cli", "replay", str(log), "--offline"]
        for step in ([*make, "--duration", str(args.duration)], [*replay, "--results", str(results)]):
            done = subprocess.run(step, capture_output=True, text=True, cwd=ROOT)
            if done.returncode:
                raise SystemExit(f"bench_view.py: {' '.join(step[1:3])} failed:\n{done.stderr}")
        contenders = {"this checkout": None, **({f"{args.against}": args.against} if args.against else {})}
        runs: dict[str, list[dict[str, list[int]]]] = {name: [] for name in contenders}
        for r in range(args.rounds):
            order = list(contenders.items())
            for name, checkout in order[r % 2 :] + order[: r % 2]:  # each goes first in turn
                print(f"round {r + 1}: {name} ...", file=sys.stderr)
                runs[name].append(run_round(log, results, workdir / "view.rrd", checkout))
    print(report(runs, args.duration, "python tools/bench_view.py " + " ".join(sys.argv[1:])))


if __name__ == "__main__":
    main()
