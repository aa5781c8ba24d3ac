"""The end of a replayed log flushes the synchronizer: every reference message gives a result, the
last one too, though no message after it proves its set complete (a real graph, real processes)."""

import json
import subprocess
import sys
from pathlib import Path

from commands import sample_log
from paths import ROOT

from fusion_pipeline.logs import LogReader

# Lidar (the reference) 60 ms after radar's grid: radar's last message (2.95 s) comes before lidar's
# last (2.96 s), and nothing after that lidar message decides its radar match but the end of the log.
CONFIG = """
[pipeline]
name = "flush"

[[streams]]
name = "lidar/top"
modality = "lidar"
endpoint = "ipc://{run_dir}/sensor-lidar.sock"
rate_hz = 10
required = true
[streams.sim]
phase_ms = 60

[[streams]]
name = "radar/front"
modality = "radar"
endpoint = "ipc://{run_dir}/sensor-radar.sock"
rate_hz = 20

[sync]
reference = "lidar/top"
max_wait_ms = 60
endpoint = "ipc://{run_dir}/sets.sock"

[model]
unbound_inputs = ["camera", "audio"]  # the default model's inputs no stream feeds here: always absent

[output]
endpoint = "ipc://{run_dir}/results.sock"

[metrics]
enabled = false
"""


def test_a_replay_gives_a_result_for_every_reference_message_of_the_log(tmp_path: Path) -> None:
    config, log, results, report = (tmp_path / n for n in ("c.toml", "log.mcap", "r.mcap", "r.json"))
    config.write_text(CONFIG)
    sample_log(log, 3, config)
    lidar = [m.sample.stamp_ns for m in LogReader(log).messages(["lidar/top"])]
    radar = [m.sample.stamp_ns for m in LogReader(log).messages(["radar/front"])]
    assert len(lidar) == 30 and radar[-1] < lidar[-1]
    replay = [
        sys.executable,
        "-m",
        "fusion_pipeline.cli",
        "replay",
        str(log),
        "-c",
        str(config),
        "--max-speed",
    ]
    replay += ["--no-progress", "--results", str(results), "--report-json", str(report)]
    done = subprocess.run(replay, cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    got = [m.sample for m in LogReader(results)]
    assert [r.stamp_ns for r in got] == lidar  # the last one too: the end of the log decided its set
    assert got[-1].meta["stamps"] == {"lidar/top": lidar[-1], "radar/front": radar[-1]}
    assert json.loads(report.read_text())["results"] == 30
    assert "results 30 for 30 reference messages" in done.stderr
