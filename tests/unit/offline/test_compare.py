"""Two runs' results compared by stamp: unmatched stamps counted on each side, class outputs agreeing by
class name (whatever order each model gives its classes), other outputs by their mean absolute
difference; comparisons of several logs merge as one. Two batch directories compared: only results the
other batch's manifest says were made from the same files, a damaged results file an error of its log."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from fusion_pipeline.contract import ModelContract, OutputSpec, default_contract
from fusion_pipeline.inference import result_sample
from fusion_pipeline.logs import LogWriter
from fusion_pipeline.offline import BatchError, LogRecord, Manifest
from fusion_pipeline.offline.compare import Comparison, check_other, compare_dirs, compare_results
from fusion_pipeline.offline.manifest import MANIFEST_NAME, PartIdentity
from fusion_pipeline.offline.summary import batch_summary, format_summary
from fusion_pipeline.transport import Sample

LIDAR = default_contract().input("lidar")


def contract(classes: tuple[str, ...], *extra: OutputSpec) -> ModelContract:
    outputs = (OutputSpec("intent_logits", (3,), "class_logits", classes=classes), *extra)
    return ModelContract((LIDAR,), outputs, presence_order=("lidar",))


OURS = contract(("stop", "go", "turn"), OutputSpec("distance", (2,), "regression"))
# Another model: the same classes in another order, the same distance output, and one more output.
THEIRS = contract(
    ("turn", "stop", "go"),
    OutputSpec("distance", (2,), "regression"),
    OutputSpec("speed", (1,), "regression"),
)


def result(model: ModelContract, stamp: int, intent: str, distance: tuple[float, ...]) -> Sample:
    classes = model.outputs[0].classes
    logits = np.where(np.array(classes) == intent, 2.0, 0.0).astype(np.float32)
    outputs = {"intent_logits": logits, "distance": np.array(distance, np.float32)}
    if any(o.name == "speed" for o in model.outputs):
        outputs["speed"] = np.zeros(1, np.float32)
    set_sample = Sample("set/fused", "set", stamp, stamp, {}, "", {"presence": [1]})
    return result_sample(set_sample, outputs, model, "CPUExecutionProvider", seq=stamp)


def test_results_match_by_stamp_and_compare_by_class_name_and_difference() -> None:
    ours = [
        result(OURS, 10, "stop", (1.0, 2.0)),
        result(OURS, 20, "go", (3.0, 3.0)),
        result(OURS, 30, "turn", (0.0, 0.0)),
        result(OURS, 40, "go", (5.0, 5.0)),  # no result of theirs at 40
    ]
    theirs = [
        result(THEIRS, 5, "go", (9.0, 9.0)),  # none of ours at 5
        result(THEIRS, 10, "stop", (1.5, 2.0)),
        result(THEIRS, 20, "turn", (3.0, 1.0)),
        result(THEIRS, 30, "turn", (0.0, -1.0)),
    ]
    comparison = compare_results(ours, theirs)
    assert (comparison.matched, comparison.only_here, comparison.only_other) == (3, 1, 1)
    figures = comparison.as_json()["outputs"]
    assert figures["intent_logits"] == {"kind": "class_logits", "compared": 3, "class_agreement": 2 / 3}
    # |diff| over the 3 matched results x 2 values: 0.5 + 0 + 0 + 2 + 0 + 1
    assert figures["distance"]["mean_abs_diff"] == pytest.approx(3.5 / 6)
    assert comparison.unshared_outputs == {"speed"}


def test_outputs_of_another_shape_are_counted_not_compared() -> None:
    longer = contract(("stop", "go", "turn"), OutputSpec("distance", (3,), "regression"))
    comparison = compare_results(
        [result(OURS, 1, "go", (1.0, 1.0))], [result(longer, 1, "go", (1.0, 1.0, 1.0))]
    )
    distance = comparison.as_json()["outputs"]["distance"]
    assert distance == {"kind": "regression", "compared": 0, "mean_abs_diff": None, "mismatched_shapes": 1}
    # The printed summary says so (it raised a TypeError on the None instead).
    compare = {"other": "/old", "logs": {"a": comparison.as_json()}, "errors": {}, "missing": []}
    run = {"ran": 1, "skipped": 0, "wall_s": 1.0, "log_s": 1.0, "log_s_per_s": 1.0, "logs_per_min": 60.0}
    text = format_summary(
        batch_summary([], run, {**compare, "overall": comparison.as_json()}, present=set()), "/out"
    )
    assert "a: 1 results matched by stamp" in text
    assert "distance no values compared (1 results of another shape there)" in text


def test_comparisons_of_several_logs_merge_as_one() -> None:
    ours = [result(OURS, s, "go", (float(s), 0.0)) for s in range(6)]
    theirs = [result(OURS, s, "go" if s % 2 else "stop", (0.0, 0.0)) for s in range(1, 7)]
    merged = Comparison()
    for stamps in (range(0, 3), range(3, 7)):  # two logs: their results split by stamp
        merged.merge(
            compare_results(
                [r for r in ours if r.stamp_ns in stamps], [r for r in theirs if r.stamp_ns in stamps]
            )
        )
    assert merged.as_json() == compare_results(ours, theirs).as_json()


ONE: list[PartIdentity] = [{"size": 10, "mtime_ns": 1}]


def batch_dir(folder: Path, *records: LogRecord) -> list[LogRecord]:
    """A batch's directory: a manifest of `records`, and a results file of three results per done one."""
    folder.mkdir()
    with Manifest(folder) as manifest:
        for record in records:
            manifest.append(record)
            if record.status == "done":
                with LogWriter(folder / record.results) as out:
                    for stamp in (10, 20, 30):
                        out.write(result(OURS, stamp, "go", (1.0, 1.0)), log_time_ns=stamp)
    return list(records)


def line(name: str, paths: list[str] | None = None, identity: list[PartIdentity] = ONE) -> LogRecord:
    paths = paths or [f"/logs/{name}.mcap"]
    return LogRecord(name, paths, "done", results=f"{name}.results.mcap", identity=identity)


def test_only_results_of_the_same_files_are_compared(tmp_path: Path) -> None:
    ours = batch_dir(
        tmp_path / "out", line("same"), line("old"), line("moved"), line("changed"), line("foreign")
    )
    other = tmp_path / "other"
    batch_dir(
        other,
        line("same"),
        line("old", identity=[]),  # a line of a version that did not record the files: paths decide
        line("moved", paths=["/elsewhere/moved.mcap"]),
        line("changed", identity=[{"size": 5, "mtime_ns": 1}]),
    )
    (other / "foreign.results.mcap").write_bytes((other / "same.results.mcap").read_bytes())
    compared = compare_dirs(ours, tmp_path / "out", other)
    assert sorted(compared["logs"]) == ["old", "same"]
    assert compared["overall"]["matched"] == 6
    assert compared["errors"] == {
        "moved": f"{other}/moved.results.mcap is the results of /elsewhere/moved.mcap, not of this log",
        "changed": f"{other}/changed.results.mcap is the results of another version of this log's files "
        "(there -> here: /logs/changed.mcap: 5 bytes at mtime_ns 1 -> 10 bytes at mtime_ns 1)",
        "foreign": f"{other}/foreign.results.mcap is there but {other}/{MANIFEST_NAME} does not say this log "
        "is done",
    }
    assert compared["missing"] == []


def test_a_results_file_cut_short_or_missing_is_said_per_log(tmp_path: Path) -> None:
    ours = batch_dir(tmp_path / "out", line("cut"), line("gone"), line("whole"))
    other = tmp_path / "other"
    batch_dir(other, line("cut"), line("gone"), line("whole"))
    whole = (other / "cut.results.mcap").read_bytes()
    (other / "cut.results.mcap").write_bytes(whole[: len(whole) * 6 // 10])
    (other / "gone.results.mcap").unlink()
    compared = compare_dirs(ours, tmp_path / "out", other)
    assert compared["errors"]["cut"].startswith(f"results cut short: {other}/cut.results.mcap: ")
    assert (list(compared["logs"]), compared["missing"]) == (["whole"], ["gone"])


def test_a_log_that_failed_in_the_other_batch_is_not_compared_and_says_why(tmp_path: Path) -> None:
    """It was listed as "not in" the other directory, and the batch exited 0 having compared nothing."""
    ours = batch_dir(tmp_path / "out", line("flip"), line("whole"))
    other = tmp_path / "other"
    failed = LogRecord("flip", ["/logs/flip.mcap"], "failed", error="log cut short: CRC does not match")
    batch_dir(other, failed, line("whole"))
    compared = compare_dirs(ours, tmp_path / "out", other)
    assert compared["errors"] == {"flip": f"failed in {other}: log cut short: CRC does not match"}
    assert (list(compared["logs"]), compared["missing"]) == (["whole"], [])


def test_another_directory_must_be_a_batch_of_its_own(tmp_path: Path) -> None:
    out, other = tmp_path / "out", tmp_path / "other"
    out.mkdir()
    other.mkdir()
    with pytest.raises(BatchError, match=f"--compare {out} is this batch's --out"):
        check_other(out, out)
    with pytest.raises(
        BatchError, match=f"--compare {other}: no {MANIFEST_NAME}, so not a batch's directory"
    ):
        check_other(other, out)
    (other / MANIFEST_NAME).write_text('{"log": "a"}\n')
    with pytest.raises(
        BatchError, match=f"{other / MANIFEST_NAME}, line 1: not a manifest record: paths: Field required"
    ):
        check_other(other, out)
    with pytest.raises(BatchError, match="no such directory"):
        check_other(tmp_path / "nowhere", out)


def test_the_same_files_by_another_path_are_compared(tmp_path: Path) -> None:
    """A batch over a linked or hard-linked copy of the logs: "NOT COMPARED: ... is the results of
    .../fleet/c.mcap, not of this log", of the very same file."""
    logs = tmp_path / "fleet"
    logs.mkdir()
    (logs / "c.mcap").write_bytes(b"a log")
    os.link(logs / "c.mcap", tmp_path / "c.mcap")  # the same file, another name
    ours = batch_dir(tmp_path / "out", line("c", paths=[str(tmp_path / "c.mcap")]))
    batch_dir(tmp_path / "other", line("c", paths=[str(logs / "c.mcap")]))
    compared = compare_dirs(ours, tmp_path / "out", tmp_path / "other")
    assert (sorted(compared["logs"]), compared["errors"]) == (["c"], {})
