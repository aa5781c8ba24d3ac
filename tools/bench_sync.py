"""Cost per message of the synchronizer: ApproximateTimePolicy against a naive exhaustive matcher,
and the Synchronizer at 4, 11 and 16 streams.

    python tools/bench_sync.py [--seconds 1000] [--baseline-messages 5000] [--write]

Four streams at the demo rates: camera 30 Hz, lidar 10 Hz (the reference), radar 20 Hz with +-10 ms
jitter, audio 50 chunks/s, arriving in stamp order; 1000 s of them is 110 000 messages. The contender
is the policy at queue_size 10; the baseline keeps the same queues but, on every message, searches
every combination of queued messages for the smallest span and emits it once every stream has shown
a later message. Both take the same messages one by one, alternating, over the first
--baseline-messages (so load from other processes on this shared machine hits both alike); the policy
then runs the whole sequence alone for its throughput. A third row times the full Synchronizer the
node uses (reference mode, lidar reference, 500 ms audio windows of 16 kHz mono cut per set).

With --write, the table replaces the "## Synchronizer" section of docs/BENCHMARKS.md.

    python tools/bench_sync.py --streams 4,11,16 [--seconds 100] [--repeats 7] [--baseline DIR] [--write]

The Synchronizer alone (no sockets, no set building) with 4, 11 and 16 streams: the demo suite; the
surround suite (6 cameras, 1 lidar, 3 radars, 1 microphone); 8 cameras, 1 lidar, 6 radars and 1
microphone. Rates and jitter as above; each suite runs in reference mode (the demo config's [sync])
and in approximate mode. Cost per message = wall time of the whole run, the sets it emits included,
over the messages added. Each repeat runs every suite and mode once, in a fresh process. --baseline
DIR names another checkout (e.g. `git worktree add --detach /tmp/sync-base HEAD` before a change):
every repeat then runs it back to back with this one, alternating which goes first, and the run stops
unless both emit the same sets, audio windows and drop counters. With --write, the table replaces the
"## Synchronizer cost per message at 4, 11 and 16 streams" section of docs/BENCHMARKS.md and the plot
goes to docs/bench_sync_streams.png.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import itertools
import json
import os
import platform
import random
import shlex
import statistics
import subprocess
import sys
import time
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from benchdoc import BENCHMARKS, machine, read_section, replace_section, split_at

from fusion_pipeline.sync import ApproximateTimePolicy, FusedSet, StreamSync, Synchronizer, SyncSettings

SECTION = "## Synchronizer"
STREAMS_SECTION = "## Synchronizer cost per message at 4, 11 and 16 streams"
STREAMS_PLOT = BENCHMARKS.parent / "bench_sync_streams.png"
ROOT = Path(__file__).resolve().parent.parent  # the checkout this script belongs to
LIVE_NODE = "### Live node"  # written by tools/bench_sync_node.py; kept when this section is rewritten
MS = 1_000_000
RATES_HZ = {"camera": 30.0, "lidar": 10.0, "radar": 20.0, "audio": 50.0}
JITTER_MS = {"camera": 1.0, "lidar": 0.5, "radar": 10.0, "audio": 0.0}


def stream_messages(rates: Mapping[str, float], seconds: float, seed: int = 0) -> list[tuple[str, int]]:
    """(stream, stamp_ns) for every message of the streams (name -> rate in Hz), in stamp order; a
    stream's jitter is its modality's, the modality being its name up to the first '/'."""
    rng = random.Random(seed)
    messages = []
    for name, rate in rates.items():
        jitter_ms = JITTER_MS[name.partition("/")[0]]
        period_ms = 1000.0 / rate
        phase = rng.uniform(0, period_ms)
        for k in range(int(seconds * rate)):
            t = phase + k * period_ms + rng.uniform(-jitter_ms, jitter_ms)
            messages.append((round(t * MS), name))
    messages.sort()
    return [(name, t) for t, name in messages]


class NaiveMatcher:
    """The obvious matcher: search every combination of queued messages, emit the smallest-span set
    once each stream has a message after it, then forget that set and everything older."""

    def __init__(self, streams: list[str], queue_size: int) -> None:
        self.queues: dict[str, deque[int]] = {s: deque(maxlen=queue_size) for s in streams}

    def add(self, stream: str, stamp_ns: int) -> list[tuple[int, ...]]:
        self.queues[stream].append(stamp_ns)
        out = []
        while all(self.queues.values()):
            best = min(itertools.product(*self.queues.values()), key=lambda c: max(c) - min(c))
            if not all(q[-1] > max(best) for q in self.queues.values()):
                break
            for queue, stamp in zip(self.queues.values(), best, strict=True):
                while queue and queue[0] <= stamp:
                    queue.popleft()
            out.append(best)
        return out


def _stats_us(samples_ns: list[int]) -> tuple[float, float, float, float]:
    us = np.asarray(samples_ns, dtype=np.float64) / 1e3
    q25, q50, q75, q99 = np.percentile(us, [25, 50, 75, 99])
    return float(q50), float(q99), float(q75 - q25), float(us.mean())


def _timed(add, messages: list[tuple[str, int]]) -> tuple[list[int], int]:
    clock = time.perf_counter_ns
    costs = []
    emitted = 0
    for name, stamp in messages:
        start = clock()
        emitted += len(add(name, stamp))
        costs.append(clock() - start)
    return costs, emitted


def bench(seconds: float, baseline_messages: int) -> tuple[list[str], dict[str, float]]:
    messages = stream_messages(RATES_HZ, seconds)
    streams = list(RATES_HZ)

    # Side by side on the prefix: one message to each, alternating.
    policy = ApproximateTimePolicy(streams, queue_size=10)
    naive = NaiveMatcher(streams, queue_size=10)
    clock = time.perf_counter_ns
    policy_costs, naive_costs = [], []
    policy_sets = naive_sets = 0
    for name, stamp in messages[:baseline_messages]:
        start = clock()
        policy_sets += len(policy.add(name, stamp))
        middle = clock()
        naive_sets += len(naive.add(name, stamp))
        naive_costs.append(clock() - middle)
        policy_costs.append(middle - start)

    # The policy alone over everything: per-message costs, then plain throughput without timers.
    full_costs, full_sets = _timed(ApproximateTimePolicy(streams, queue_size=10).add, messages)
    rates = []
    for _ in range(3):
        policy = ApproximateTimePolicy(streams, queue_size=10)
        start = time.perf_counter()
        for name, stamp in messages:
            policy.add(name, stamp)
        rates.append(len(messages) / (time.perf_counter() - start))
    throughput = float(np.median(rates))

    # The node's Synchronizer: reference mode, audio windows cut from 20 ms chunks of 16 kHz mono.
    settings = SyncSettings(
        mode="reference", reference="lidar", max_wait_ns=60 * MS, audio_window_ns=500 * MS
    )
    sync = Synchronizer(
        settings,
        [
            StreamSync("camera"),
            StreamSync("lidar", required=True),
            StreamSync("radar"),
            StreamSync("audio", "continuous", sample_rate=16000),
        ],
    )
    chunk = np.zeros((320, 1), dtype=np.float32)
    sync_costs = []
    sync_sets = 0
    for name, stamp in messages:
        payload = chunk if name == "audio" else name
        start = clock()
        sync_sets += len(sync.add(name, stamp, payload))
        sync_costs.append(clock() - start)

    p_med, p_99, p_iqr, p_mean = _stats_us(policy_costs)
    n_med, n_99, n_iqr, n_mean = _stats_us(naive_costs)
    f_med, f_99, f_iqr, f_mean = _stats_us(full_costs)
    s_med, s_99, s_iqr, s_mean = _stats_us(sync_costs)
    rows = [
        f"| ApproximateTimePolicy | first {baseline_messages} | {p_med:.2f} | {p_99:.2f} | {p_iqr:.2f} "
        f"| {p_mean:.2f} | {policy_sets} |",
        f"| naive exhaustive search (baseline) | first {baseline_messages} | {n_med:.2f} | {n_99:.2f} "
        f"| {n_iqr:.2f} | {n_mean:.2f} | {naive_sets} |",
        f"| ApproximateTimePolicy | all {len(messages)} | {f_med:.2f} | {f_99:.2f} | {f_iqr:.2f} "
        f"| {f_mean:.2f} | {full_sets} |",
        f"| Synchronizer, reference mode + 500 ms audio windows | all {len(messages)} | {s_med:.2f} "
        f"| {s_99:.2f} | {s_iqr:.2f} | {s_mean:.2f} | {sync_sets} |",
    ]
    figures = {
        "ratio_median": n_med / p_med,
        "ratio_p99": n_99 / p_99,
        "ratio_mean": n_mean / p_mean,
        "throughput": throughput,
        "messages": len(messages),
    }
    return rows, figures


# -- the Synchronizer at 4, 11 and 16 streams ---------------------------------------------------------------

REFERENCE_STREAM = "lidar/top"
AUDIO_RATE = 16000  # 50 chunks/s of 320 frames
MODES = {
    # The demo config's [sync]: one set per lidar sweep.
    "reference": SyncSettings(
        mode="reference", reference=REFERENCE_STREAM, max_wait_ns=60 * MS, audio_window_ns=500 * MS
    ),
    # max_wait above the slowest period (lidar, 100 ms) and its jitter: no stream drops out between two
    # of its messages.
    "approximate": SyncSettings(
        mode="approximate", reference=REFERENCE_STREAM, max_wait_ns=150 * MS, audio_window_ns=500 * MS
    ),
}


def sensor_suite(cameras: int, radars: int) -> dict[str, float]:
    """Stream name -> rate (Hz): the cameras, one lidar (the reference), the radars, one microphone."""
    rates = {f"camera/{i}": RATES_HZ["camera"] for i in range(cameras)}
    rates[REFERENCE_STREAM] = RATES_HZ["lidar"]
    rates |= {f"radar/{i}": RATES_HZ["radar"] for i in range(radars)}
    rates["audio/roof"] = RATES_HZ["audio"]
    return rates


SUITES = {4: sensor_suite(1, 1), 11: sensor_suite(6, 3), 16: sensor_suite(8, 6)}
ACCEPTANCE = (16, 50_000)  # issue 14: at 16 streams, at least 50,000 messages/s

CLOCKS = ("wall", "cpu")  # perf_counter; process_time, which time spent waiting for a CPU does not inflate

# clock -> (suite's stream count, mode) -> seconds per message, one value per repeat
Runs = dict[str, dict[tuple[int, str], list[float]]]


def _stream_syncs(rates: Mapping[str, float]) -> list[StreamSync]:
    return [
        StreamSync(name, "continuous", sample_rate=AUDIO_RATE)
        if name.startswith("audio/")
        else StreamSync(name, required=name == REFERENCE_STREAM)
        for name in rates
    ]


def _payloads(messages: Sequence[tuple[str, int]]) -> list[object]:
    """Each message's payload: its index, or for audio a chunk whose samples are its index, so that
    the digest of the sets sees which message went where."""
    frames = AUDIO_RATE // int(RATES_HZ["audio"])
    return [
        np.full((frames, 1), i, dtype=np.float32) if name.startswith("audio/") else i
        for i, (name, _) in enumerate(messages)
    ]


def _digest(sets: Sequence[FusedSet], sync: Synchronizer) -> str:
    """sha256 of the sets (stamps, payloads, presence, audio windows) and the drop counters."""
    digest = hashlib.sha256()
    for fused in sets:
        fields = (
            fused.stamp_ns,
            sorted(fused.stamps.items()),
            sorted(fused.payloads.items()),
            fused.presence,
        )
        digest.update(repr(fields).encode())
        for name, window in sorted(fused.windows.items()):
            digest.update(repr((name, window.start_ns, window.end_ns, window.last_ns)).encode())
            if window.samples is not None:
                digest.update(window.samples.tobytes())
    digest.update(repr(sorted(sync.counters.as_dict().items())).encode())
    return digest.hexdigest()


def one_pass(counts: Sequence[int], seconds: float) -> dict[str, Any]:
    """Every suite in every mode once, in this process: wall and CPU seconds, messages, sets, the digest
    of what came out (the sets of a final flush included), per "count/mode"."""
    import fusion_pipeline

    runs = {}
    for count in counts:
        messages = stream_messages(SUITES[count], seconds)
        payloads = _payloads(messages)
        for mode, settings in MODES.items():
            sync: Synchronizer = Synchronizer(settings, _stream_syncs(SUITES[count]))
            add = sync.add
            sets: list[FusedSet] = []
            gc.collect()
            start, start_cpu = time.perf_counter(), time.process_time()
            for (name, stamp), payload in zip(messages, payloads, strict=True):
                sets += add(name, stamp, payload)
            wall_s, cpu_s = time.perf_counter() - start, time.process_time() - start_cpu
            emitted = len(sets)
            sets += sync.flush()
            runs[f"{count}/{mode}"] = {
                "wall": wall_s,
                "cpu": cpu_s,
                "messages": len(messages),
                "sets": emitted,
                "digest": _digest(sets, sync),
            }
    return {"package": str(Path(fusion_pipeline.__file__).resolve().parent.parent), "runs": runs}


def _pass_in(root: Path, counts: Sequence[int], seconds: float) -> dict[str, Any]:
    """one_pass in a fresh process that imports fusion_pipeline from the checkout `root`."""
    path = os.pathsep.join(p for p in (str(root), os.environ.get("PYTHONPATH")) if p)
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", "--seconds", str(seconds)]
    command += ["--streams", ",".join(map(str, counts))]
    done = subprocess.run(
        command, env={**os.environ, "PYTHONPATH": path}, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"the pass over {root} failed:\n{done.stderr}")
    result = json.loads(done.stdout)
    if Path(result["package"]) != root.resolve():
        raise SystemExit(f"the pass over {root} imported fusion_pipeline from {result['package']}")
    return result


def bench_streams(
    counts: Sequence[int], seconds: float, repeats: int, baseline: Path | None
) -> tuple[dict[str, Runs], dict[tuple[int, str], tuple[int, int]]]:
    """Seconds per message for each checkout ("contender" = this one, "baseline"), clock, suite and
    mode, one value per repeat; and each suite and mode's (messages, sets). Stops unless every pass of
    every checkout emitted the same output."""
    roots = {"contender": ROOT} if baseline is None else {"contender": ROOT, "baseline": baseline}
    seconds_per_message: dict[str, Runs] = {label: {clock: {} for clock in CLOCKS} for label in roots}
    sizes: dict[tuple[int, str], tuple[int, int]] = {}
    digests: dict[str, set[str]] = {}
    for repeat in range(repeats):
        labels = list(roots) if repeat % 2 == 0 else list(roots)[::-1]
        for label in labels:
            result = _pass_in(roots[label], counts, seconds)
            for key, run in result["runs"].items():
                count, mode = key.split("/")
                for clock in CLOCKS:
                    seconds_per_message[label][clock].setdefault((int(count), mode), []).append(
                        run[clock] / run["messages"]
                    )
                sizes[(int(count), mode)] = (run["messages"], run["sets"])
                digests.setdefault(key, set()).add(run["digest"])
            print(f"repeat {repeat + 1}/{repeats}: {label} done", file=sys.stderr)
    differ = sorted(key for key, found in digests.items() if len(found) > 1)
    if differ:
        raise SystemExit(f"the passes emitted different sets or counters for {differ} ({list(roots)})")
    return seconds_per_message, sizes


def _median_range(values: Sequence[float], fmt: str) -> str:
    return f"{statistics.median(values):{fmt}} ({min(values):{fmt}}-{max(values):{fmt}})"


def _us(seconds_per_message: Sequence[float]) -> str:
    return _median_range([s * 1e6 for s in seconds_per_message], ".2f")


def streams_section(
    commands: Sequence[str],
    seconds: float,
    runs: dict[str, Runs],
    sizes: dict[tuple[int, str], tuple[int, int]],
    baseline_name: str | None,
) -> str:
    header = "| streams | mode | messages | sets | messages/s | µs/message | CPU µs/message |"
    if baseline_name is not None:
        header += (
            " baseline µs/message | baseline CPU µs/message | baseline / contender, µs "
            "| baseline / contender, CPU µs |"
        )
    rows = [header, "|" + "---|" * header.count(" |")]
    contender = runs["contender"]
    for key in sorted(contender["wall"], key=lambda key: (key[0], list(MODES).index(key[1]))):
        wall, cpu = contender["wall"][key], contender["cpu"][key]
        messages, sets = sizes[key]
        row = (
            f"| {key[0]} | {key[1]} | {messages} | {sets} | {_median_range([1 / s for s in wall], ',.0f')} "
            f"| {_us(wall)} | {_us(cpu)} |"
        )
        if baseline_name is not None:
            base_wall, base_cpu = runs["baseline"]["wall"][key], runs["baseline"]["cpu"][key]
            # Each ratio pairs the two passes of one repeat, run back to back.
            wall_ratios = [b / c for b, c in zip(base_wall, wall, strict=True)]
            cpu_ratios = [b / c for b, c in zip(base_cpu, cpu, strict=True)]
            row += (
                f" {_us(base_wall)} | {_us(base_cpu)} "
                f"| {_median_range(wall_ratios, '.2f')}x | {_median_range(cpu_ratios, '.2f')}x |"
            )
        rows.append(row)
    streams, least = ACCEPTANCE
    verdicts = []
    for mode in MODES:
        if (streams, mode) not in contender["wall"]:
            continue  # the suite the acceptance names was not run
        rate = statistics.median([1 / s for s in contender["wall"][(streams, mode)]])
        verdict = "meets" if rate >= least else "does NOT meet"
        verdicts.append(f"{mode} mode {rate:,.0f} messages/s, {verdict} the {least:,} messages/s acceptance")
    suites = "; ".join(
        f"{count}: " + ", ".join(f"{sum(n.startswith(m + '/') for n in SUITES[count])} {m}" for m in RATES_HZ)
        for count in sorted({count for count, _ in contender["wall"]})
    )
    repeats = len(next(iter(contender["wall"].values())))
    commit = _commit(ROOT)
    contender_name = "this checkout" if commit is None else f"this checkout, commit `{commit}`"
    compared = (
        ""
        if baseline_name is None
        else f" The baseline is {baseline_name}, run back to back with the contender ({contender_name}) in "
        "every repeat, alternating which goes first; a ratio divides the baseline's cost by the "
        "contender's in the same repeat. Both emitted the same sets, audio windows and drop counters "
        "(sha256, every pass)."
    )
    return "\n".join(
        [
            STREAMS_SECTION,
            "",
            "The Synchronizer alone (no sockets, no set building, no log-mel) driven message by message: "
            "messages/s and µs/message are messages added over the wall time of the whole run, the sets "
            "it emits included; CPU µs/message uses the process's CPU time instead, which time spent "
            "waiting for a CPU on this shared machine does not inflate.",
            "",
            "```",
            *commands,
            "```",
            "",
            f"Suites (cameras 30 Hz, lidar 10 Hz the reference and required, radars 20 Hz with +-10 ms "
            f"jitter, 16 kHz audio in 50 chunks/s): {suites}; {seconds:g} s of each, in stamp order. "
            "Reference mode: the demo config's [sync] (max_wait 60 ms, 500 ms audio windows); approximate "
            "mode: max_wait 150 ms. queue_size 10. Each repeat runs every suite and mode once in a fresh "
            f"process; median (min-max) over {repeats} repeats. Machine: {machine()} (shared), Python "
            f"{platform.python_version()}.{compared}",
            "",
            *rows,
            "",
            *([f"At {streams} streams (median): " + "; ".join(verdicts) + ".", ""] if verdicts else []),
            f"![µs per message against the number of streams]({STREAMS_PLOT.name})",
            "",
        ]
    )


def plot_streams(runs: dict[str, Runs], path: Path) -> None:
    """Wall µs per message against the stream count: median and min-max per checkout and mode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for label, by_clock in runs.items():
        for mode in MODES:
            keys = sorted(key for key in by_clock["wall"] if key[1] == mode)
            us = [[s * 1e6 for s in by_clock["wall"][key]] for key in keys]
            medians = [statistics.median(v) for v in us]
            below = [m - min(v) for m, v in zip(medians, us, strict=True)]
            above = [max(v) - m for m, v in zip(medians, us, strict=True)]
            ax.errorbar(
                [count for count, _ in keys],
                medians,
                yerr=[below, above],
                color=f"C{list(MODES).index(mode)}",  # one colour per mode, a line style per checkout
                marker="o" if label == "contender" else "s",
                linestyle="-" if label == "contender" else "--",
                capsize=3,
                label=f"{mode}, {label}",
            )
    ax.set_xticks(sorted({count for by_clock in runs.values() for count, _ in by_clock["wall"]}))
    ax.set_xlabel("streams")
    ax.set_ylabel("µs per message, wall (median, min-max)")
    ax.set_ylim(bottom=0)
    ax.axhline(20, color="grey", linewidth=0.8, linestyle=":", label="50,000 messages/s")
    ax.set_title("Synchronizer cost per message")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _commit(checkout: Path) -> str | None:
    """The checkout's commit, e.g. 2b2475b (None where git cannot tell)."""
    done = subprocess.run(
        ["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    return None if done.returncode else done.stdout.strip()


def _counts(text: str) -> list[int]:
    counts = [int(part) for part in text.split(",")]
    unknown = [count for count in counts if count not in SUITES]
    if unknown:
        raise argparse.ArgumentTypeError(f"no suite of {unknown} streams; suites: {sorted(SUITES)}")
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--seconds", type=float, help="length of the generated streams (default 1000, with --streams 100)"
    )
    parser.add_argument("--baseline-messages", type=int, default=5000, help="prefix run side by side")
    parser.add_argument("--streams", type=_counts, help="the Synchronizer with these numbers of streams")
    parser.add_argument("--repeats", type=int, default=7, help="--streams: passes of each checkout")
    parser.add_argument("--baseline", type=Path, help="--streams: another checkout, run side by side")
    parser.add_argument("--write", action="store_true", help="update docs/BENCHMARKS.md")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # one pass, as JSON
    args = parser.parse_args(argv)

    if args.streams:
        seconds = 100.0 if args.seconds is None else args.seconds
        if args.worker:
            print(json.dumps(one_pass(args.streams, seconds)))
            return 0
        runs, sizes = bench_streams(args.streams, seconds, args.repeats, args.baseline)
        commands = [shlex.join(["python", "tools/bench_sync.py", *(sys.argv[1:] if argv is None else argv)])]
        baseline_name = None
        if args.baseline is not None:
            commit = _commit(args.baseline)
            baseline_name = f"`{args.baseline}`" if commit is None else f"commit `{commit}`"
            if commit is not None:  # how that checkout was made
                commands.insert(
                    0, shlex.join(["git", "worktree", "add", "--detach", str(args.baseline), commit])
                )
        text = streams_section(commands, seconds, runs, sizes, baseline_name)
        print(text)
        if args.write:
            replace_section(BENCHMARKS, text)
            plot_streams(runs, STREAMS_PLOT)
        return 0

    args.seconds = 1000.0 if args.seconds is None else args.seconds
    rows, fig = bench(args.seconds, args.baseline_messages)
    verdict = "meets" if fig["throughput"] >= 100_000 else "does NOT meet"
    lines = [
        SECTION,
        "",
        "Cost per message (µs) of the pure synchronization policy against a naive matcher that searches "
        "every combination of queued messages, side by side on the same messages (alternating).",
        "",
        "```",
        "python tools/bench_sync.py --write",
        "```",
        "",
        f"Streams: camera 30 Hz, lidar 10 Hz, radar 20 Hz (+-10 ms jitter), audio 50 chunks/s, "
        f"{args.seconds:g} s = {fig['messages']} messages in stamp order; queue_size 10, age penalty 0. "
        f"Machine: {machine()} (shared), Python {platform.python_version()}.",
        "",
        "| what | messages | median | p99 | IQR | mean | sets |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"Baseline / policy: {fig['ratio_median']:.1f}x at the median, {fig['ratio_p99']:.1f}x at p99, "
        f"{fig['ratio_mean']:.1f}x on the mean.",
        f"Policy throughput without per-call timers (median of 3 runs): {fig['throughput']:,.0f} "
        f"messages/s with 4 streams at queue_size 10 ({verdict} the 100,000 messages/s acceptance).",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if args.write:
        write(BENCHMARKS, text)
    return 0


def write(doc: Path, section: str) -> None:
    """Replace our section of DOC, keeping the "### Live node" part that tools/bench_sync_node.py writes
    at its end."""
    _, live = split_at(read_section(doc, SECTION) or "", LIVE_NODE)
    replace_section(doc, section.rstrip("\n") + "\n\n" + live if live else section)


if __name__ == "__main__":
    sys.exit(main())
