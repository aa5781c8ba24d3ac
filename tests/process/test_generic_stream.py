"""A 1 kHz IMU through the live demo with real processes (issue 16, item 3): configs/imu.toml with the
IMU's driver external (the test sends, tools/bench_imu.py's ImuDriver), 4 s of messages; every message
sent is counted at ingest and reaches the synchronizer, none dropped, as the metrics and the final
heartbeats say; the sets carry the IMU's window. About 25 s. The 60 s acceptance run is the tool's
(docs/BENCHMARKS.md, "Generic streams: a 1 kHz IMU")."""

from __future__ import annotations

import sys
from pathlib import Path

from paths import ROOT

# The tools are scripts run as `python tools/NAME.py` (their folder on sys.path), not a package.
sys.path.insert(0, str(ROOT / "tools"))

from bench_imu import accounting, run_imu  # noqa: E402

SEND_S = 4.0


def test_every_imu_message_sent_at_1khz_is_counted_at_ingest_and_taken_by_the_synchronizer(
    tmp_path: Path,
) -> None:
    result = run_imu(SEND_S, 1000.0, tmp_path)
    counts = accounting(result)
    sent = counts["sent"]
    assert sent == 4000
    # Final heartbeats: ingest received and published each one, the synchronizer took each one.
    assert counts == {
        "sent": sent,
        "ingest_received": sent,
        "ingest_refused": 0,
        "ingest_seq_lost": 0,
        "ingest_skipped": 0,
        "ingest_published": sent,
        "sync_received": sent,
        "sync_dropped": 0,
    }, counts
    # The same from the metrics an operator reads, 3 s after the last message.
    metrics = result["metrics"]
    assert metrics["fusion_stream_messages_total{}"] == sent
    assert metrics["fusion_stream_synchronized_total{}"] == sent
    assert metrics["fusion_stream_seq_lost_total{}"] == 0
    dropped = {k: v for k, v in metrics.items() if k.startswith("fusion_stream_dropped_total") and v}
    malformed = {k: v for k, v in metrics.items() if k.startswith("fusion_stream_malformed_total") and v}
    assert dropped == {} and malformed == {}
    assert "imu" not in result["drops"].get("synchronizer", {})
    # The sets in the sending span carry the IMU's window, nearly full (100 rows at 1 kHz).
    rows = [r for r in result["rows"] if r >= 0]
    assert len(rows) >= 0.8 * len(result["rows"]) and len(rows) >= 20, result["rows"]
    assert sorted(rows)[len(rows) // 2] >= 95
