"""What a batch's results say: per log and for the batch, statistics that merge.

`LogStats` holds one log's results in figures that add up across logs (counts, and each output's
moments merged as Chan et al. merge them), so a worker computes them once, the manifest keeps them, and
the batch summary merges the logs' figures without reading any result again. `batch_summary` makes the
summary.json of a batch; `format_summary` its printed text.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fusion_pipeline.offline.manifest import LogRecord, MomentsJson, StatsJson
from fusion_pipeline.transport.wire import Sample

__all__ = ["LogStats", "Moments", "batch_summary", "class_of", "format_summary", "presence_pattern"]

CLASS_KIND = "class_logits"  # the output kind whose statistic is a class histogram


def presence_pattern(presence: Sequence[int], inputs: Sequence[str], streams: Sequence[str] = ()) -> str:
    """A result's presence mask in words: "all present", or "without" what is behind each 0 bit: its
    stream, as the run summary names it (`streams`, the result's ``meta.streams``), else its model input
    (one no stream feeds)."""
    names = list(inputs) if len(inputs) == len(presence) else [f"input {i}" for i in range(len(presence))]
    if len(streams) == len(names):
        names = [stream or name for stream, name in zip(streams, names, strict=True)]
    missing = [name for name, bit in zip(names, presence, strict=True) if not bit]
    return "without " + ", ".join(missing) if missing else "all present"


def class_of(logits: np.ndarray, classes: Sequence[str]) -> str:
    """The class a class_logits output picks: its name, or its index where the contract names none."""
    index = int(np.argmax(logits))
    return classes[index] if index < len(classes) else str(index)


@dataclass
class Moments:
    """Count, mean, spread, min and max of values, mergeable: `m2` is the sum of squared deviations."""

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0
    low: float = math.inf
    high: float = -math.inf

    def add(self, values: np.ndarray) -> None:
        values = np.asarray(values, np.float64).ravel()
        if values.size:
            mean = float(values.mean())
            m2 = float(np.square(values - mean).sum())
            self.merge(Moments(values.size, mean, m2, float(values.min()), float(values.max())))

    def merge(self, other: Moments) -> None:
        if other.n == 0:
            return
        n = self.n + other.n
        delta = other.mean - self.mean
        self.mean += delta * other.n / n
        self.m2 += other.m2 + delta * delta * self.n * other.n / n
        self.n = n
        self.low, self.high = min(self.low, other.low), max(self.high, other.high)

    @property
    def std(self) -> float:
        """The population standard deviation (of all values, not an estimate from a sample)."""
        return math.sqrt(self.m2 / self.n) if self.n else math.nan

    def as_json(self) -> MomentsJson:
        return {"n": self.n, "mean": self.mean, "m2": self.m2, "min": self.low, "max": self.high}

    @classmethod
    def from_json(cls, raw: MomentsJson) -> Moments:
        return cls(int(raw["n"]), float(raw["mean"]), float(raw["m2"]), float(raw["min"]), float(raw["max"]))

    def report(self) -> dict[str, float]:
        return {"mean": self.mean, "std": self.std, "min": self.low, "max": self.high}


@dataclass
class LogStats:
    """The results of one log (or of several, merged): presence patterns and output statistics.

    Class outputs (kind class_logits) count the class each result picks; every other output gets the
    moments of all its values (every element of every result)."""

    results: int = 0
    patterns: Counter[str] = field(default_factory=Counter)
    outputs: dict[str, Moments] = field(default_factory=dict)
    classes: dict[str, Counter[str]] = field(default_factory=dict)

    @classmethod
    def of(cls, results: Iterable[Sample]) -> LogStats:
        stats = cls()
        for result in results:
            stats.add(result)
        return stats

    def add(self, result: Sample) -> None:
        self.results += 1
        meta = result.meta
        presence = result.arrays.get("presence", np.zeros(0, np.uint8))
        pattern = presence_pattern(presence.tolist(), meta.get("inputs", []), meta.get("streams", []))
        self.patterns[pattern] += 1
        for name, spec in meta.get("outputs", {}).items():
            value = result.arrays.get(name)
            if value is None:
                continue
            if spec.get("kind") == CLASS_KIND:
                self.classes.setdefault(name, Counter())[class_of(value, spec.get("classes", []))] += 1
            else:
                self.outputs.setdefault(name, Moments()).add(value)

    def merge(self, other: LogStats) -> None:
        self.results += other.results
        self.patterns.update(other.patterns)
        for name, moments in other.outputs.items():
            self.outputs.setdefault(name, Moments()).merge(moments)
        for name, counts in other.classes.items():
            self.classes.setdefault(name, Counter()).update(counts)

    def as_json(self) -> StatsJson:
        """Everything `from_json` needs to merge it later (the manifest keeps it)."""
        return {
            "results": self.results,
            "patterns": dict(self.patterns.most_common()),
            "outputs": {name: m.as_json() for name, m in sorted(self.outputs.items())},
            "classes": {name: dict(c.most_common()) for name, c in sorted(self.classes.items())},
        }

    @classmethod
    def from_json(cls, raw: StatsJson) -> LogStats:
        return cls(
            results=int(raw.get("results", 0)),
            patterns=Counter(raw.get("patterns", {})),
            outputs={name: Moments.from_json(m) for name, m in raw.get("outputs", {}).items()},
            classes={name: Counter(c) for name, c in raw.get("classes", {}).items()},
        )

    def report(self) -> dict[str, Any]:
        """What a summary shows: patterns by count, each output's mean/std/min/max or class histogram."""
        outputs: dict[str, Any] = {name: m.report() for name, m in self.outputs.items()}
        outputs.update({name: {"classes": dict(c.most_common())} for name, c in self.classes.items()})
        return {"patterns": dict(self.patterns.most_common()), "outputs": dict(sorted(outputs.items()))}


def _log_summary(record: LogRecord, present: AbstractSet[str]) -> dict[str, Any]:
    if record.status == "failed":
        return {"status": "failed", "error": record.error}
    if record.results not in present:
        gone = f"its results file {record.results} is no longer there; a run that names the log redoes it"
        return {"status": "removed", "error": gone}
    counts, timings = record.counts, record.timings
    return {
        "status": "done",
        "results_file": record.results,
        "sets": counts.get("sets", 0),
        "results": counts.get("results", 0),
        "log_s": timings.get("log_s", 0.0),
        "speedup": timings.get("speedup", 0.0),
        **LogStats.from_json(record.stats).report(),
    }


def batch_summary(
    records: Sequence[LogRecord],
    run: Mapping[str, Any],
    compare: Mapping[str, Any] | None = None,
    *,
    present: AbstractSet[str],
) -> dict[str, Any]:
    """The summary of a batch's logs (their last records): per log, and merged for the batch.

    `run` says what this run of the command did (the logs it ran, its wall time, throughput); `compare`
    is the comparison with another batch's results, when asked for. `present` names the results files
    in the directory: a done log whose file was since removed is `removed`, not counted as done."""
    done = [r for r in records if r.status == "done" and r.results in present]
    failed = sum(r.status == "failed" for r in records)
    merged = LogStats()
    for record in done:
        merged.merge(LogStats.from_json(record.stats))
    summary: dict[str, Any] = {
        "logs": {record.log: _log_summary(record, present) for record in records},
        "batch": {
            "logs": len(records),
            "done": len(done),
            "failed": failed,
            "removed": len(records) - len(done) - failed,
            "sets": sum(r.counts.get("sets", 0) for r in done),
            "results": sum(r.counts.get("results", 0) for r in done),
            "log_s": sum(r.timings.get("log_s", 0.0) for r in done),
            **merged.report(),
        },
        "run": dict(run),
    }
    if compare is not None:
        summary["compare"] = dict(compare)
    return summary


def _figure(value: float) -> str:
    return f"{value:.4g}"


def _stats_text(entry: Mapping[str, Any]) -> str:
    patterns = ", ".join(f"{pattern} {n}" for pattern, n in entry["patterns"].items())
    outputs = []
    for name, figures in entry["outputs"].items():
        if "classes" in figures:
            outputs.append(f"{name}: " + ", ".join(f"{c} {n}" for c, n in figures["classes"].items()))
        else:
            outputs.append(
                f"{name}: mean {_figure(figures['mean'])} std {_figure(figures['std'])} "
                f"[{_figure(figures['min'])}, {_figure(figures['max'])}]"
            )
    return f"patterns: {patterns or 'none'}; " + ("; ".join(outputs) or "no outputs")


def _output_agreement_text(name: str, figures: Mapping[str, Any]) -> str:
    """One output's agreement; a new model that changed an output's shape has nothing to compare
    element by element, and says so."""
    if "class_agreement" in figures:
        agreement = figures["class_agreement"]
        return f"{name} agree {100 * agreement:.1f} %" if agreement is not None else f"{name} none compared"
    diff, reshaped = figures["mean_abs_diff"], figures["mismatched_shapes"]
    text = f"{name} mean |diff| {_figure(diff)}" if diff is not None else f"{name} no values compared"
    return text + (f" ({reshaped} results of another shape there)" if reshaped else "")


def _agreement_text(comparison: Mapping[str, Any]) -> str:
    parts = [_output_agreement_text(name, figures) for name, figures in comparison["outputs"].items()]
    if comparison["unshared_outputs"]:
        parts.append(f"outputs of one side only: {', '.join(comparison['unshared_outputs'])}")
    return (
        f"{comparison['matched']} results matched by stamp, unmatched {comparison['only_here']} here and "
        f"{comparison['only_other']} there; " + (", ".join(parts) or "no output in common")
    )


def format_summary(summary: Mapping[str, Any], out: str) -> str:
    """The printed summary of `batch_summary`'s dict, for the batch in directory `out`."""
    batch, run = summary["batch"], summary["run"]
    lines = [
        f"batch of {batch['logs']} log{'' if batch['logs'] == 1 else 's'} in {out}: {batch['done']} done, "
        f"{batch['failed']} failed"
        + (f", {batch['removed']} removed" if batch["removed"] else "")
        + "; this run "
        f"ran {run['ran']} ({run['skipped']} done before"
        + (f", {run['refused']} refused" if run.get("refused") else "")
        + f") in {run['wall_s']:.1f} s: "
        f"{run['log_s']:.1f} s of log, {run['log_s_per_s']:.2f} log s per s, "
        f"{run['logs_per_min']:.1f} logs/min"
    ]
    for name, entry in summary["logs"].items():
        if entry["status"] in ("failed", "removed"):
            lines.append(f"  {name}: {entry['status'].upper()}: {entry['error']}")
        else:
            lines.append(f"  {name}: {entry['sets']} sets, {entry['results']} results; {_stats_text(entry)}")
    lines.append(f"  all logs: {batch['sets']} sets, {batch['results']} results; {_stats_text(batch)}")
    compare = summary.get("compare")
    if compare is not None:
        lines.append(f"compared with {compare['other']}:")
        for name, comparison in compare["logs"].items():
            lines.append(f"  {name}: {_agreement_text(comparison)}")
        for name, error in compare["errors"].items():
            lines.append(f"  {name}: NOT COMPARED: {error}")
        if compare["missing"]:
            none = "" if compare["logs"] else " (no log of this batch is: is it the batch to compare with?)"
            lines.append(f"  not in {compare['other']}: {', '.join(compare['missing'])}{none}")
        lines.append(f"  all logs: {_agreement_text(compare['overall'])}")
    return "\n".join(lines)
