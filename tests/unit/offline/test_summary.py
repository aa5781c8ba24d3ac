"""The batch summary's statistics: presence patterns in words, moments that merge as if computed at once,
a log's results counted by pattern, class and output, kept in the manifest as JSON and merged for the
batch; the printed text names every log and a failed log's error."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fusion_pipeline.contract import ModelContract, OutputSpec, default_contract
from fusion_pipeline.inference import result_sample
from fusion_pipeline.offline.manifest import LogRecord
from fusion_pipeline.offline.summary import (
    LogStats,
    Moments,
    batch_summary,
    format_summary,
    presence_pattern,
)
from fusion_pipeline.transport import Sample

CONTRACT = ModelContract(
    (default_contract().input("lidar"), default_contract().input("radar")),
    (
        OutputSpec("intent_logits", (3,), "class_logits", classes=("stop", "go", "turn")),
        OutputSpec("distance", (2,), "regression", units="m"),
    ),
    presence_order=("lidar", "radar"),
)


def result(stamp: int, intent: int, distance: tuple[float, float], presence: tuple[int, int]) -> Sample:
    """A result of CONTRACT's model picking class `intent`, as the inference stage builds it."""
    logits = np.full(3, -1.0, np.float32)
    logits[intent] = 1.0
    outputs = {"intent_logits": logits, "distance": np.array(distance, np.float32)}
    set_sample = Sample("set/fused", "set", stamp, stamp, {}, "", {"presence": list(presence)})
    return result_sample(set_sample, outputs, CONTRACT, "CPUExecutionProvider", seq=stamp)


RESULTS = [
    result(1, 0, (1.0, 2.0), (1, 1)),
    result(2, 1, (3.0, 5.0), (1, 0)),
    result(3, 1, (-4.0, 0.5), (1, 1)),
    result(4, 2, (8.0, 8.0), (0, 0)),
]


def test_a_presence_pattern_names_the_missing_inputs() -> None:
    assert presence_pattern([1, 1, 1], ["camera", "lidar", "radar"]) == "all present"
    assert presence_pattern([1, 0, 0], ["camera", "lidar", "radar"]) == "without lidar, radar"
    # A mask whose names do not fit it is still said, by position.
    assert presence_pattern([0, 1], ["camera"]) == "without input 0"
    # By the stream behind each bit, as the run summary names them; an input no stream feeds by its name.
    streams = ["camera/front", "", "radar/front"]
    assert presence_pattern([0, 0, 1], ["camera", "lidar", "radar"], streams) == "without camera/front, lidar"


@pytest.mark.parametrize("cut", [0, 1, 5, 17, 30])
def test_moments_merged_are_the_moments_of_all_values(cut: int) -> None:
    values = np.random.default_rng(cut).normal(3.0, 2.0, 30)
    merged, first, second = Moments(), Moments(), Moments()
    first.add(values[:cut])
    second.add(values[cut:])
    merged.merge(first)
    merged.merge(second)
    assert merged.n == 30
    assert merged.mean == pytest.approx(values.mean())
    assert merged.std == pytest.approx(values.std())
    assert (merged.low, merged.high) == (values.min(), values.max())


def test_log_stats_count_patterns_classes_and_output_values() -> None:
    stats = LogStats.of(RESULTS)
    assert stats.results == 4
    assert stats.patterns == {"all present": 2, "without radar": 1, "without lidar, radar": 1}
    assert stats.classes == {"intent_logits": {"stop": 1, "go": 2, "turn": 1}}
    distances = np.array([r.arrays["distance"] for r in RESULTS], np.float64).ravel()
    report = stats.report()["outputs"]
    assert report["distance"] == pytest.approx(
        {"mean": distances.mean(), "std": distances.std(), "min": distances.min(), "max": distances.max()}
    )
    assert report["intent_logits"] == {"classes": {"go": 2, "stop": 1, "turn": 1}}
    assert "intent_probs" not in report  # what a kind decodes is not an output of the model


def test_log_stats_survive_the_manifest_and_merge_as_one_log() -> None:
    first = LogStats.from_json(json.loads(json.dumps(LogStats.of(RESULTS[:1]).as_json())))
    first.merge(LogStats.from_json(json.loads(json.dumps(LogStats.of(RESULTS[1:]).as_json()))))
    whole = LogStats.of(RESULTS)
    assert (first.results, first.patterns, first.classes) == (whole.results, whole.patterns, whole.classes)
    assert first.outputs["distance"].report() == pytest.approx(whole.outputs["distance"].report())


def _record(name: str, results: list[Sample], log_s: float) -> LogRecord:
    return LogRecord(
        name,
        [f"/logs/{name}.mcap"],
        "done",
        results=f"{name}.results.mcap",
        counts={"sets": len(results) + 1, "results": len(results)},
        timings={"log_s": log_s, "speedup": 10.0},
        stats=LogStats.of(results).as_json(),
    )


RUN = {
    "ran": 3,
    "skipped": 0,
    "wall_s": 2.0,
    "log_s": 5.0,
    "log_s_per_s": 2.5,
    "logs_per_min": 90.0,
}


def test_the_batch_summary_adds_up_its_done_logs_and_names_the_failed() -> None:
    records = [
        _record("a", RESULTS[:3], 2.0),
        _record("b", RESULTS[3:], 3.0),
        LogRecord("cut", ["/logs/cut.mcap"], "failed", error="log cut short: /logs/cut.mcap: ..."),
    ]
    summary = batch_summary(records, RUN, present={"a.results.mcap", "b.results.mcap"})
    batch = summary["batch"]
    assert (batch["logs"], batch["done"], batch["failed"]) == (3, 2, 1)
    assert (batch["sets"], batch["results"], batch["log_s"]) == (6, 4, 5.0)
    assert batch["patterns"] == LogStats.of(RESULTS).report()["patterns"]
    assert summary["logs"]["a"]["outputs"]["intent_logits"] == {"classes": {"go": 2, "stop": 1}}
    assert summary["logs"]["cut"] == {"status": "failed", "error": "log cut short: /logs/cut.mcap: ..."}
    assert summary["run"] == RUN and "compare" not in summary
    text = format_summary(summary, "/out")
    assert "3 logs in /out: 2 done, 1 failed" in text
    assert "cut: FAILED: log cut short" in text
    assert "intent_logits: go 2, stop 1" in text  # log a's line
    assert "without lidar, radar 1" in text  # log b's pattern, in its line and the batch's
    assert "this run ran 3 (0 done before) in 2.0 s" in text
    # A log refused this run (another file under its results' name) is in the line too.
    refused = format_summary(batch_summary(records, {**RUN, "refused": 1}, present=set()), "/out")
    assert "this run ran 3 (0 done before, 1 refused) in 2.0 s" in refused


def test_a_done_log_whose_results_file_was_removed_is_not_counted_as_done() -> None:
    """The summary covers every log of the manifest, also those a run does not name: one whose results
    were removed since it ran was still summed as done, its figures from a file no longer there."""
    records = [_record("a", RESULTS[:3], 2.0), _record("b", RESULTS[3:], 3.0)]
    summary = batch_summary(records, RUN, present={"b.results.mcap"})
    batch = summary["batch"]
    assert (batch["logs"], batch["done"], batch["failed"], batch["removed"]) == (2, 1, 0, 1)
    assert (batch["sets"], batch["results"], batch["log_s"]) == (2, 1, 3.0)  # b's alone
    assert summary["logs"]["a"] == {
        "status": "removed",
        "error": "its results file a.results.mcap is no longer there; a run that names the log redoes it",
    }
    text = format_summary(summary, "/out")
    assert "2 logs in /out: 1 done, 0 failed, 1 removed" in text
    assert "a: REMOVED: its results file a.results.mcap is no longer there" in text
    one = format_summary(batch_summary(records[1:], RUN, present={"b.results.mcap"}), "/out")
    assert one.startswith("batch of 1 log in /out: 1 done, 0 failed; this run")
