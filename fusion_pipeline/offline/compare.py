"""Two runs' results of one log side by side, matched by stamp: did the other model change anything?

For each output both sides have: a class output (kind class_logits) agrees where both pick the same
class (by name, so two models that order their classes differently still compare); any other output is
compared by the mean absolute difference of its values. Results whose stamp only one side has are
counted as unmatched.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fusion_pipeline.logs.reader import LogReader
from fusion_pipeline.offline.manifest import LogRecord
from fusion_pipeline.offline.summary import CLASS_KIND, class_of
from fusion_pipeline.transport.wire import Sample

__all__ = ["Comparison", "OutputAgreement", "compare_dirs", "compare_files", "compare_results"]


@dataclass
class OutputAgreement:
    """One output over the matched results: agreeing classes, or summed absolute differences."""

    kind: str
    compared: int = 0  # matched results that carry it on both sides, with the same shape
    agreeing: int = 0  # class outputs: those that pick the same class
    abs_diff: float = 0.0  # other outputs: the sum of |ours - theirs| over every element
    elements: int = 0
    mismatched_shapes: int = 0  # matched results whose values cannot be compared element by element

    def merge(self, other: OutputAgreement) -> None:
        self.compared += other.compared
        self.agreeing += other.agreeing
        self.abs_diff += other.abs_diff
        self.elements += other.elements
        self.mismatched_shapes += other.mismatched_shapes

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "compared": self.compared}
        if self.kind == CLASS_KIND:
            out["class_agreement"] = self.agreeing / self.compared if self.compared else None
        else:
            out["mean_abs_diff"] = self.abs_diff / self.elements if self.elements else None
            out["mismatched_shapes"] = self.mismatched_shapes
        return out


@dataclass
class Comparison:
    """One log's results against another run's (or several logs', merged)."""

    matched: int = 0
    only_here: int = 0  # our results whose stamp the other run has no result for
    only_other: int = 0
    outputs: dict[str, OutputAgreement] = field(default_factory=dict)
    unshared_outputs: set[str] = field(default_factory=set)  # outputs only one side's model has

    def merge(self, other: Comparison) -> None:
        self.matched += other.matched
        self.only_here += other.only_here
        self.only_other += other.only_other
        for name, agreement in other.outputs.items():
            self.outputs.setdefault(name, OutputAgreement(agreement.kind)).merge(agreement)
        self.unshared_outputs |= other.unshared_outputs

    def as_json(self) -> dict[str, Any]:
        return {
            "matched": self.matched,
            "only_here": self.only_here,
            "only_other": self.only_other,
            "outputs": {name: a.as_json() for name, a in sorted(self.outputs.items())},
            "unshared_outputs": sorted(self.unshared_outputs),
        }


def compare_results(ours: Iterable[Sample], theirs: Iterable[Sample]) -> Comparison:
    """Our results against theirs, matched by stamp (a stamp twice on a side: its last result)."""
    other = {result.stamp_ns: result for result in theirs}
    comparison = Comparison()
    for result in ours:
        match = other.pop(result.stamp_ns, None)
        if match is None:
            comparison.only_here += 1
            continue
        comparison.matched += 1
        _compare_outputs(result, match, comparison)
    comparison.only_other = len(other)
    return comparison


def _compare_outputs(ours: Sample, theirs: Sample, comparison: Comparison) -> None:
    our_specs, their_specs = ours.meta.get("outputs", {}), theirs.meta.get("outputs", {})
    comparison.unshared_outputs |= set(our_specs) ^ set(their_specs)
    for name in our_specs.keys() & their_specs.keys():
        spec, their_spec = our_specs[name], their_specs[name]
        a, b = ours.arrays.get(name), theirs.arrays.get(name)
        if a is None or b is None:
            continue
        agreement = comparison.outputs.setdefault(name, OutputAgreement(spec.get("kind", "")))
        if spec.get("kind") == CLASS_KIND:
            agreement.compared += 1
            same = class_of(a, spec.get("classes", [])) == class_of(b, their_spec.get("classes", []))
            agreement.agreeing += same
        elif a.shape != b.shape:
            agreement.mismatched_shapes += 1
        else:
            agreement.compared += 1
            agreement.abs_diff += float(np.abs(a.astype(np.float64) - b.astype(np.float64)).sum())
            agreement.elements += a.size


def compare_files(ours: Path, theirs: Path) -> Comparison:
    """Two results logs (`replay --results` or a batch's NAME.results.mcap) compared."""
    return compare_results(
        (m.sample for m in LogReader(ours, verify_crcs=False)),
        (m.sample for m in LogReader(theirs, verify_crcs=False)),
    )


def compare_dirs(records: Sequence[LogRecord], out: Path, other: Path) -> dict[str, Any]:
    """The done logs of `records` (their results in `out`) against the same logs' results in the batch
    directory `other`: per log, overall, and the logs `other` has no results for."""
    logs: dict[str, Any] = {}
    overall = Comparison()
    missing = []
    for record in records:
        if record.status != "done":
            continue
        theirs = other / record.results
        if not theirs.is_file():
            missing.append(record.log)
            continue
        comparison = compare_files(out / record.results, theirs)
        logs[record.log] = comparison.as_json()
        overall.merge(comparison)
    return {"other": str(other), "logs": logs, "overall": overall.as_json(), "missing": missing}
