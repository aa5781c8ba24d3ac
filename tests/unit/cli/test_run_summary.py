"""The end-of-run summary says why there is no result ratio, and what a ratio correction was."""

from __future__ import annotations

from typing import Any

from fusion_pipeline.cli.run import format_summary


def _summary(**changes: Any) -> dict[str, Any]:
    """A summary as Supervisor.summary gives it, with `changes`."""
    base: dict[str, Any] = {
        "pipeline": "robot",
        "duration_s": 15.0,
        "provider": "CPUExecutionProvider",
        "results": 120,
        "reference_stream": "lidar/top",
        "reference_messages": 150,
        "result_ratio": None,
        "result_ratio_counts": [0, 0],
        "result_ratio_unreported": 0,
        "log_time": False,
        "sets_full": 100,
        "sets_partial": 20,
        "missing": {},
        "inference_skipped": 0,
        "restarts": {},
        "restarts_total": 0,
        "drops": {},
        "latency_ms": {},
        "warmup_s": 2.0,
    }
    return {**base, **changes}


def test_no_reference_stream_is_said_as_such() -> None:
    """Approximate mode without a reference said `for 0 reference messages` and blamed a short run."""
    text = format_summary(_summary(reference_stream="", reference_messages=0))
    assert "results 120; no result ratio: no reference stream (sync.reference)" in text
    assert "reference messages" not in text and "too short" not in text
    short = format_summary(_summary())
    assert "results 120 for 150 reference messages; no result ratio: the run was too short" in short


def test_a_ratio_correction_does_not_blame_a_restart_that_did_not_happen() -> None:
    text = format_summary(_summary(result_ratio=1.0, result_ratio_counts=[68, 68], result_ratio_unreported=1))
    assert "; 1 of the messages counted from their results: the reference's ingest heartbeats had not" in text
    assert "its node restarted" not in text


def test_the_ratio_says_which_results_it_counts() -> None:
    """Its count read as the results after the warm-up, which the latency figures count (202 against 183)."""
    text = format_summary(_summary(result_ratio=1.0, result_ratio_counts=[183, 183]))
    assert (
        "ratio 1.0 (183 for 183, from the reference's first heartbeat after the warm-up to its last one a "
        "second before the stop)" in text
    )
