"""The end-of-run summary says why there is no result ratio, and what a ratio correction was."""

from __future__ import annotations

from typing import Any

from fusion_pipeline.cli.run import _crash_looping, format_summary


def _summary(**changes: Any) -> dict[str, Any]:
    """A summary as Supervisor.summary gives it, with `changes`."""
    base: dict[str, Any] = {
        "pipeline": "robot",
        "duration_s": 15.0,
        "provider": "CPUExecutionProvider",
        "results": 120,
        "results_published": 120,
        "reference_stream": "lidar/top",
        "reference_messages": 150,
        "reference_skipped": 0,
        "reference_lost": 0,
        "nothing_received": [],
        "result_ratio": None,
        "result_ratio_counts": [0, 0],
        "result_ratio_unreported": 0,
        "log_time": False,
        "sets_full": 100,
        "sets_partial": 20,
        "missing": {},
        "sync_sets_full": 100,
        "sync_sets_partial": 20,
        "sync_sets_missing_required": 0,
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
    assert "NOTHING" not in short


def test_streams_of_which_nothing_arrived_are_said() -> None:
    """A reference whose driver crash-looped for 45 s was "too short a run"; an external radar that never
    started showed only as `missing: radar/front 227`."""
    text = format_summary(
        _summary(results=0, results_published=0, reference_messages=0, nothing_received=["lidar/top"])
    )
    assert "no result ratio: nothing of the reference lidar/top arrived" in text and "too short" not in text
    assert "NOTHING received from lidar/top: a dead or absent sensor" in text
    radar = format_summary(_summary(nothing_received=["radar/front"]))
    assert "NOTHING received from radar/front" in radar and "too short" in radar
    assert "NOT UP" not in radar


def test_streams_silent_when_the_run_stopped_are_said() -> None:
    """QA: the reference lidar silent for the last 14 s of 30 (an outage, a driver that died): the run
    said a ratio of 1.0 and nothing else, the ratio counting only what arrived."""
    silent = {
        "lidar/top": {"silent_s": 14.2, "required": True},
        "camera/back_left": {"silent_s": 28.0, "required": False},
    }
    text = format_summary(_summary(silent_at_stop=silent))
    assert (
        "SILENT when the run stopped: lidar/top (required) for 14.2 s, camera/back_left for 28 s: a sensor "
        "that stopped sending" in text
    )
    assert "the result ratio counts only the reference messages that arrived" in text
    assert "SILENT" not in format_summary(_summary())


def test_a_handshake_still_failing_at_the_stop_is_said() -> None:
    """A driver that refused this host's key: the summary said only "a dead or absent sensor"."""
    refused = {"radar/front": "the CURVE server refused this client's key"}
    text = format_summary(_summary(nothing_received=["radar/front"], handshake_failing=refused))
    assert "HANDSHAKE FAILING at the stop: radar/front: the CURVE server refused this client's key" in text
    assert "HANDSHAKE" not in format_summary(_summary())


def test_nodes_that_never_came_up_are_said_not_blamed_on_the_sensors() -> None:
    """A run stopped at 2 s, its nodes still importing, said that every sensor was dead."""
    text = format_summary(_summary(not_up=["sensor_sim:camera/front", "ingest:camera/front"]))
    assert "NOT UP when the run stopped (no heartbeat): sensor_sim:camera/front, ingest:camera/front" in text
    assert "NOTHING" not in text


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


def test_the_summary_says_what_became_of_the_results_and_reference_messages_it_does_not_count() -> None:
    """A composed run behind a slow model said ratio 0.95 while ingest passed over 91 lidar scans; the
    first results, published before the supervisor listened, were missing from its count; and the sets
    line counted the results' sets, silent about the synchronizer's and the ones dropped."""
    text = format_summary(
        _summary(
            results=69,
            results_published=71,
            reference_messages=61,
            reference_skipped=91,
            reference_lost=13,
            sync_sets_full=138,
            sync_sets_partial=4,
            sync_sets_missing_required=61,
        )
    )
    assert (
        "results 71 (69 reached the supervisor) for 61 reference messages (91 more passed over by ingest"
        in text
    )
    assert "for newer ones, 13 more never arrived);" in text
    # Published before the synchronizer was connected: among the reference messages, and why no result.
    early = format_summary(
        _summary(results=132, results_published=132, reference_messages=145, reference_unsynchronized=12)
    )
    assert (
        "results 132 for 145 reference messages (12 of them before the synchronizer was connected);" in early
    )
    assert "the synchronizer's: full 138, partial 4, dropped for a missing required stream 61;" in text


def test_a_stream_no_model_input_takes_is_said_by_the_sets_that_held_it() -> None:
    """An IMU absent from every set (a nearest tolerance too tight) showed nowhere: no result holds it."""
    text = format_summary(_summary(sync_sets_published=120, unbound_held={"imu": 0}))
    assert "streams in no model input: imu in 0 of 120 sets" in text
    assert "streams in no model input" not in format_summary(
        _summary(sync_sets_published=120, unbound_held={})
    )


def test_what_a_simulated_driver_never_sent_is_said_apart_from_the_pipelines_drops() -> None:
    """An outage read as two losses: `ingest:camera/back: seq_lost 72; sensor_sim:camera/back: outage 72`."""
    drops = {"ingest:camera/back": {"seq_lost": 72}, "sensor_sim:camera/back": {"outage": 60, "late": 12}}
    text = format_summary(_summary(drops=drops))
    assert "drops:\n  ingest:camera/back: seq_lost 72\n" in text
    assert (
        "not sent by the simulated drivers (each a gap ingest counts as seq_lost, once the stream sends "
        "again):\n  " in text
    )
    assert (
        "sensor_sim:camera/back: outage 60, late 12" in text
        or "sensor_sim:camera/back: late 12, outage 60" in text
    )


def test_only_a_node_that_failed_again_after_restarts_fails_the_run() -> None:
    assert _crash_looping(_summary(not_up=["ingest:lidar/top"], restarts={"ingest:lidar/top": 3})) == [
        "ingest:lidar/top"
    ]
    # Killed once and not yet back at the stop; up after restarts; never started in a short run.
    assert _crash_looping(_summary(not_up=["inference"], restarts={"inference": 1})) == []
    assert _crash_looping(_summary(not_up=[], restarts={"inference": 4})) == []
    assert _crash_looping(_summary(not_up=["inference"], restarts={})) == []
