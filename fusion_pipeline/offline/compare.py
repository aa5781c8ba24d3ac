"""Two runs' results of one log side by side, matched by stamp: did the other model change anything?

For each output both sides have: a class output (kind class_logits) agrees where both pick the same
class (by name, so two models that order their classes differently still compare); any other output is
compared by the mean absolute difference of its values. Results whose stamp only one side has are
counted as unmatched.

`compare_dirs` compares a batch's logs with another batch's results of the same logs: the other batch's
manifest must say its results were made from the same files (the same paths and, where both lines say
so, the same sizes and modification times), else the log is not compared and says why, as it does when
either results file is damaged or cut short. A log's problem is that log's, never the batch's.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fusion_pipeline.errors import FusionError
from fusion_pipeline.logs.errors import LogError
from fusion_pipeline.logs.reader import LogReader
from fusion_pipeline.offline.errors import BatchError
from fusion_pipeline.offline.manifest import (
    MANIFEST_NAME,
    LogRecord,
    identity_changes,
    read_records,
    same_files,
)
from fusion_pipeline.offline.summary import CLASS_KIND, class_of
from fusion_pipeline.transport.wire import Sample

__all__ = [
    "Comparison",
    "OutputAgreement",
    "check_other",
    "compare_dirs",
    "compare_files",
    "compare_results",
    "other_records",
]

log = logging.getLogger(__name__)


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
    """Two results logs (`replay --results` or a batch's NAME.results.mcap) compared; LogError when either
    cannot be read or is cut short (the results it lost would count as unmatched)."""
    readers = LogReader(ours, verify_crcs=False), LogReader(theirs, verify_crcs=False)
    comparison = compare_results(*((m.sample for m in reader) for reader in readers))  # reads both through
    if cut := [where for reader in readers for where in reader.truncated]:
        raise LogError(f"results cut short: {'; '.join(cut)}")
    return comparison


def other_records(other: Path) -> dict[str, LogRecord]:
    """The records of the batch directory `other`'s manifest; BatchError when it has none or a bad line."""
    path = other / MANIFEST_NAME
    try:
        text = path.read_bytes().decode(errors="replace")
    except FileNotFoundError:
        raise BatchError(
            f"--compare {other}: no {MANIFEST_NAME}, so not a batch's directory: which log made each of its "
            "results is unknown"
        ) from None
    except OSError as exc:
        raise BatchError(f"--compare {path}: cannot read: {exc.strerror}") from exc
    return read_records(text, str(path))


def check_other(other: Path, out: Path) -> None:
    """BatchError unless `other` is another batch's directory than `out`, with a readable manifest."""
    if not other.is_dir():
        raise BatchError(f"--compare {other}: no such directory")
    if out.is_dir() and os.path.samefile(other, out):
        raise BatchError(
            f"--compare {other} is this batch's --out: its results would be compared with themselves"
        )
    other_records(other)


def compare_dirs(records: Sequence[LogRecord], out: Path, other: Path) -> dict[str, Any]:
    """The done logs of `records` (their results in `out`) against the same logs' results in the batch
    directory `other`: per log, overall, the logs `other` has no results for (`missing`) and those that
    could not be compared, with why (`errors`)."""
    logs: dict[str, Any] = {}
    overall = Comparison()
    missing = []
    errors: dict[str, str] = {}
    try:  # again, not as check_other read it at the start: a batch may have run there since
        theirs: dict[str, LogRecord] = other_records(other)
        unreadable = ""
    except BatchError as exc:
        theirs, unreadable = {}, str(exc)
    for record in records:
        if record.status != "done":
            continue
        their_record = theirs.get(record.log)
        if their_record is not None and their_record.status == "failed":  # not compared: said, exit 1
            errors[record.log] = f"failed in {other}: {their_record.error}"
            continue
        their_file = other / record.results
        if not their_file.is_file():
            missing.append(record.log)
            continue
        if unreadable:
            errors[record.log] = unreadable
            continue
        try:
            _same_log(record, theirs.get(record.log), their_file)
            comparison = compare_files(out / record.results, their_file)
        except Exception as exc:  # whatever goes wrong is this log's, said in the summary written next
            errors[record.log] = _error_text(exc, record.log)
            continue
        logs[record.log] = comparison.as_json()
        overall.merge(comparison)
    return {
        "other": str(other),
        "logs": logs,
        "overall": overall.as_json(),
        "missing": missing,
        "errors": errors,
    }


def _same_log(ours: LogRecord, theirs: LogRecord | None, their_file: Path) -> None:
    """BatchError unless the other batch's line `theirs` says `their_file` was made from the files
    `ours` was made from."""
    if theirs is None or theirs.status != "done":
        raise BatchError(
            f"{their_file} is there but {their_file.parent / MANIFEST_NAME} does not say this log is done"
        )
    if theirs.paths != ours.paths and not same_files(theirs.paths, ours.paths):
        raise BatchError(f"{their_file} is the results of {', '.join(theirs.paths)}, not of this log")
    # A line of an older version does not say which version of the files made it: the paths must do.
    if ours.identity and theirs.identity:
        changes = identity_changes(ours.paths, theirs.identity, ours.identity)
        if changes:
            raise BatchError(
                f"{their_file} is the results of another version of this log's files (there -> here: "
                f"{changes})"
            )


def _error_text(exc: Exception, name: str) -> str:
    if isinstance(exc, FusionError):
        return str(exc)
    # Not a failure foreseen here: its traceback goes to the log.
    log.exception("comparing %s: %s", name, exc)
    return f"{type(exc).__name__}: {exc}"
