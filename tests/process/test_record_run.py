"""`[record] enabled`: the supervisor runs the recorder beside the pipeline and every stream is recorded."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from pipeline_harness import demo_text, pipeline

from fusion_pipeline.logs import LogReader


def _with_recording(path: Path) -> Callable[[str], str]:
    def config(text: str) -> str:
        edited = re.sub(
            r"^\[record\]\nenabled = false.*\npath = .*$",
            f'[record]\nenabled = true\npath = "{path}"',
            text,
            count=1,
            flags=re.M,
        )
        assert edited != text, "the demo config's [record] section moved"
        return edited

    return config


def test_run_records_every_stream_without_gaps(tmp_path: Path) -> None:
    recording = tmp_path / "rec.mcap"
    edit = _with_recording(recording)
    summary_path = tmp_path / "summary.json"
    args = ("--duration", "8", "--summary-json", str(summary_path))
    with pipeline(lambda run_dir: demo_text(run_dir, edit), *args, workdir=tmp_path) as run:
        assert run.process.wait(timeout=60) == 0, run.output()
        assert run.all_node_pids() == []
    counters = json.loads(summary_path.read_text())["counters"]
    seqs: dict[str, list[int]] = defaultdict(list)
    for message in LogReader(recording):
        seqs[message.sample.stream].append(message.sample.seq)
    for stream in ("camera/front", "lidar/top", "radar/front", "audio/roof"):
        got = seqs[stream]
        assert len(got) > 10, (stream, len(got))
        assert got == sorted(set(got)), stream
        # The recorder joins a moment after the drivers start; from then on it misses no message the
        # driver sent. A driver starved of CPU skips captures itself (counted as late/dropped/outage),
        # and those seqs were never on the wire.
        missing = got[-1] - got[0] + 1 - len(got)
        driver = counters[f"sensor_sim:{stream}"]
        never_sent = driver["late"] + driver["dropped"] + driver["outage"]
        assert missing <= never_sent, (stream, missing, driver)
    assert seqs["result/fused"], "results are recorded too"
