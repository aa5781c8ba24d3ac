"""The log commands, run in this process on real files and sockets: options that would be ignored are
refused, a report is never written over, and a failed recording leaves no log behind. The commands as a
user runs them, end to end: tests/process/test_cli_logs.py, test_record.py, test_offline_replay.py."""

import errno
import json
import logging
import signal
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from commands import sample_log
from mcap.reader import make_reader
from node_harness import write_config

from fusion_pipeline.cli import main
from fusion_pipeline.logs import LogError, LogWriter, Recorder, export_ros2
from fusion_pipeline.offline import LogRecord
from fusion_pipeline.transport import Sample


@pytest.fixture(autouse=True)
def keep_signal_handlers() -> Iterator[None]:
    """`record` and `replay` catch Ctrl-C for themselves; give pytest its handlers back afterwards."""
    saved = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


@pytest.fixture(scope="module")
def demo_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sample_log(tmp_path_factory.mktemp("log") / "demo.mcap", 0.5)


def _fails(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Run the command, which must fail with a usage error (exit 2); its message."""
    assert main(list(argv)) == 2
    return capsys.readouterr().err


def test_replay_refuses_run_dir_without_publish_only(tmp_path: Path, capsys) -> None:
    # Refused before the log is opened (there is none here), so the failure is quick either way.
    log = str(tmp_path / "missing.mcap")
    for pace in ("--max-speed", "--rate=2", "--loop"):
        err = _fails(capsys, "replay", log, pace, "--run-dir", str(tmp_path))
        assert f"--run-dir {tmp_path} goes with --publish-only" in err


@pytest.mark.parametrize(
    "command",
    [
        ("replay", "--offline", "--no-progress"),
        ("export-foxglove", "-o"),
        ("export-ros2", "-o"),
        ("view", "--save"),  # it showed every message twice, under a made-up second source
    ],
)
def test_a_log_given_twice_is_refused(
    demo_log: Path, tmp_path: Path, capsys, command: tuple[str, ...]
) -> None:
    again = demo_log.parent / ".." / demo_log.parent.name / demo_log.name  # another spelling of it
    out = [str(tmp_path / "out")] if command[-1] in ("-o", "--save") else []
    err = _fails(capsys, command[0], str(demo_log), str(again), *command[1:], *out)
    assert f"{again}: given twice (both are {demo_log.resolve()})" in err
    assert not (tmp_path / "out").exists()


def test_replay_refuses_a_remap_of_a_stream_it_does_not_replay(demo_log: Path, capsys) -> None:
    streams = ("--streams", "camera/front", "lidar/top", "radar/front")
    err = _fails(capsys, "replay", str(demo_log), "--offline", *streams, "--remap", "audio/roof=audio/roof")
    assert "--remap audio/roof=audio/roof: not a stream --streams replays" in err


def test_replay_report_is_never_written_over(demo_log: Path, tmp_path: Path, capsys) -> None:
    report = tmp_path / "report.json"
    report.write_text("kept\n")
    err = _fails(capsys, "replay", str(demo_log), "--offline", "--no-progress", "--report-json", str(report))
    assert f"--report-json {report}: exists already" in err and report.read_text() == "kept\n"
    # A new one is written whole, and nothing beside it is left (write_new's partial file).
    fresh = tmp_path / "fresh.json"
    assert main(["replay", str(demo_log), "--offline", "--no-progress", "--report-json", str(fresh)]) == 0
    written = json.loads(fresh.read_text())
    assert written["sent"]["lidar/top"] > 0 and written["parts_not_given"] == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fresh.json", "report.json"]


def test_record_report_is_never_written_over(tmp_path: Path, capsys) -> None:
    report, out = tmp_path / "report.json", tmp_path / "rec.mcap"
    report.write_text("kept\n")
    command = ("record", str(out), "--run-dir", str(tmp_path), "--duration", "0.1")
    err = _fails(capsys, *command, "--report-json", str(report))
    assert f"--report-json {report}: exists already" in err
    assert report.read_text() == "kept\n" and not out.exists()  # refused before recording


def test_replay_and_batch_with_verify_crcs_refuse_a_damaged_chunk(
    demo_log: Path, tmp_path: Path, capsys
) -> None:
    """Bytes flipped inside a chunk's data leave valid records: replay and batch, which read without the
    CRCs for speed, replayed the damaged data and said nothing (exit 0, the log marked done). With
    --verify-crcs they refuse it as the exports do, naming the file and the chunk."""
    data = bytearray(demo_log.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 8] = bytes(b ^ 0xFF for b in data[middle : middle + 8])
    damaged = tmp_path / "logs" / "damaged.mcap"
    damaged.parent.mkdir()
    damaged.write_bytes(bytes(data))
    err = _fails(capsys, "replay", str(damaged), "--offline", "--no-progress", "--verify-crcs")
    assert f"{damaged}: chunk at byte" in err and "CRC does not match" in err
    out = tmp_path / "out"
    assert main(["batch", str(damaged.parent), "--out", str(out), "--no-progress", "--verify-crcs"]) == 1
    record = json.loads((out / "manifest.jsonl").read_text())
    assert record["status"] == "failed" and "CRC does not match" in record["error"]
    assert json.loads((out / "summary.json").read_text())["run"]["logs_per_min"] == 0  # none replayed
    assert main(["batch", str(damaged.parent), "--out", str(tmp_path / "fast"), "--no-progress"]) == 0


def test_a_replay_says_which_config_streams_the_log_lacks(
    demo_log: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The surround config over the demo's log: five cameras and two radars absent from every set, and
    nothing said (the other way round, log streams the config lacks, was said)."""
    assert main(["replay", str(demo_log), "-c", "package:surround.toml", "--offline", "--no-progress"]) == 0
    assert "the log holds no camera/front_left, camera/front_right, camera/back" in caplog.text
    assert caplog.text.count("the log holds no") == 1
    caplog.clear()  # streams left out by --streams are the command's choice, not what the log lacks
    caplog.set_level(logging.INFO)
    chosen = ["--streams", "camera/front", "--streams", "lidar/top"]
    assert main(["replay", str(demo_log), *chosen, "--offline", "--no-progress"]) == 0
    assert "the log holds no" not in caplog.text
    # and are said as that, not as streams the config lacks
    assert "not replaying audio/roof, radar/front: not in --streams" in caplog.text
    assert "no such stream in the config" not in caplog.text


def test_a_batch_record_names_the_config_streams_its_log_lacks(demo_log: Path, tmp_path: Path) -> None:
    """A batch said nothing of it: the log was `done`, the lack only a presence pattern in its summary."""
    out = tmp_path / "out"
    argv = ["batch", str(demo_log), "--out", str(out), "-c", "package:surround.toml", "--no-progress"]
    assert main(argv) == 0
    record = json.loads((out / "manifest.jsonl").read_text())
    assert record["status"] == "done"
    assert record["counts"]["absent"][:3] == ["camera/front_left", "camera/front_right", "camera/back"]
    # and kept when a rerun reads the manifest back (its fields are typed: an unknown one was dropped)
    assert LogRecord.from_json(record).counts["absent"] == record["counts"]["absent"]
    # The other way round: the log's streams the config has not (they were dropped without a word).
    config = write_config(tmp_path / "no-radar.toml", ["camera", "lidar", "audio"])
    out = tmp_path / "out-no-radar"
    assert main(["batch", str(demo_log), "--out", str(out), "-c", str(config), "--no-progress"]) == 0
    counts = json.loads((out / "manifest.jsonl").read_text())["counts"]
    assert (counts["left_out"], counts["absent"]) == (["radar/front"], [])


def test_record_refuses_at_start_a_name_whose_later_parts_exist(tmp_path: Path, capsys) -> None:
    """`_000` moved away, `_001` left: the recording wrote `_000` and lost everything from `_001` on."""
    (tmp_path / "sp_001.mcap").write_text("kept\n")
    command = ("record", str(tmp_path / "sp.mcap"), "--run-dir", str(tmp_path), "--split-duration", "1")
    err = _fails(capsys, *command, "--duration", "0.1")
    assert f"{tmp_path / 'sp_001.mcap'} exists already, not overwriting a log" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sp_001.mcap"]
    assert "directory" in _fails(capsys, "record", str(tmp_path / "no" / "sp.mcap"), "--duration", "0.1")


def test_a_record_that_cannot_subscribe_leaves_no_log(ipc_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "rec.mcap"
    too_long = ipc_dir / ("x" * 120)  # no ipc socket path is that long
    err = _fails(capsys, "record", str(out), "--run-dir", str(too_long), "--duration", "0.1")
    assert "File name too long" in err and not out.exists()
    # So the retry is not refused as "exists already": it records (nothing, no pipeline runs) and exits 1.
    assert main(["record", str(out), "--run-dir", str(ipc_dir), "--duration", "0.1"]) == 1
    assert "nothing received" in capsys.readouterr().err and not out.exists()


def test_a_record_that_fails_before_any_message_leaves_no_log(
    ipc_dir: Path, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: Recorder, timeout_ms: int = 0) -> bool:
        raise LogError("the socket broke")

    monkeypatch.setattr(Recorder, "poll", broken)
    out = tmp_path / "rec.mcap"
    command = ("record", str(out), "--run-dir", str(ipc_dir), "--duration", "5")
    assert "the socket broke" in _fails(capsys, *command)
    assert not out.exists()


def test_a_stopped_offline_replay_leaves_no_results(
    demo_log: Path, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Results take their name only once the replay went through the log (before, a stopped run left a
    valid-looking file of the results so far, and exit 0)."""
    import fusion_pipeline.cli.logs as cli_logs

    # Ctrl-C before the first message
    monkeypatch.setattr(cli_logs, "_stop_on_signals", lambda stopped: stopped.__setitem__(0, True))
    results, report = tmp_path / "r.mcap", tmp_path / "r.json"
    assert main(["replay", str(demo_log), "--offline", "--no-progress", "--results", str(results)]) == 130
    err = capsys.readouterr().err
    assert f"stopped before the end of the log: --results {results} not written" in err
    assert list(tmp_path.iterdir()) == []
    # Its report neither: the figures of part of the log would pass for the whole log's.
    assert main(["replay", str(demo_log), "--offline", "--no-progress", "--report-json", str(report)]) == 130
    err = capsys.readouterr().err
    assert f"stopped before the end of the log: --report-json {report} not written" in err
    assert list(tmp_path.iterdir()) == []
    # Ctrl-C while the model loads, before the replay's own stop is set up: said the same way (it was
    # exit 130 without a word).
    monkeypatch.undo()

    def interrupted(*_: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("fusion_pipeline.offline.graph.OfflineGraph.__init__", interrupted)
    assert main(["replay", str(demo_log), "--offline", "--no-progress", "--results", str(results)]) == 130
    err = capsys.readouterr().err
    assert f"stopped before the end of the log: --results {results} not written" in err
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    assert main(["replay", str(demo_log), "--offline", "--no-progress", "--results", str(results)]) == 0
    assert [p.name for p in tmp_path.iterdir()] == ["r.mcap"]


@pytest.mark.parametrize("output", ["--results", "--report-json"])
def test_replay_refuses_loop_with_an_output_it_could_never_write(tmp_path: Path, capsys, output: str) -> None:
    # --loop ends only at Ctrl-C, and a stopped replay writes neither file: refused before the log is opened.
    out = tmp_path / "out"
    err = _fails(capsys, "replay", str(tmp_path / "missing.mcap"), "--loop", output, str(out))
    assert f"--loop does not go with {output} {out}: a looped replay ends only at Ctrl-C" in err
    assert err.count("\n") == 1 and not out.exists()


#: The step of each conversion command that runs once per message, after its output was created.
_PER_MESSAGE = {
    "export-foxglove": "fusion_pipeline.logs.foxglove.to_foxglove",
    "export-ros2": "fusion_pipeline.logs.ros2.to_ros",
    "import-ros2": "fusion_pipeline.logs.ros2.from_ros",
}


@pytest.fixture(scope="module")
def demo_bag(demo_log: Path) -> Path:
    bag = demo_log.parent / "demo-bag"
    export_ros2([demo_log], bag)  # not through main, which would keep its SIGTERM handler
    return bag


def _conversion(command: str, demo_log: Path, demo_bag: Path, out: Path) -> list[str]:
    if command == "import-ros2":
        return [command, str(demo_bag), "-o", str(out), "--map", "/lidar/top=lidar/top"]
    return [command, str(demo_log), "-o", str(out)]


def _signalled(signum: signal.Signals) -> Callable[..., object]:
    """A per-message step that gets `signum`, as from `kill`; fails the test instead of letting a SIGTERM
    that the command does not handle end pytest."""

    def step(*args: object, **kwargs: object) -> object:
        if signal.getsignal(signum) == signal.SIG_DFL:
            pytest.fail(f"{signum.name} would end the command on the spot, its partial output left behind")
        signal.raise_signal(signum)
        raise AssertionError("not reached")

    return step


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=lambda signum: signum.name)
@pytest.mark.parametrize("command", sorted(_PER_MESSAGE))
def test_a_stopped_conversion_leaves_nothing(
    demo_log: Path,
    demo_bag: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: str,
    signum: signal.Signals,
) -> None:
    """Ctrl-C or SIGTERM midway: nothing under -o (which would block the retry) nor beside it, and said
    (it was exit 130 and not a word)."""
    out = tmp_path / "out"
    monkeypatch.setattr(_PER_MESSAGE[command], _signalled(signum))
    # A test run started in the background without job control inherits SIGINT ignored: as a terminal's.
    interactive = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        assert main(_conversion(command, demo_log, demo_bag, out)) == 130
    finally:
        signal.signal(signal.SIGINT, interactive)
    assert list(tmp_path.iterdir()) == []
    assert capsys.readouterr().err.endswith(f"fusion-pipeline {command}: stopped; nothing written to {out}\n")
    monkeypatch.undo()
    assert main(_conversion(command, demo_log, demo_bag, out)) == 0  # the retry
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def _disk_full(*args: object, **kwargs: object) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def _sqlite_full(*args: object, **kwargs: object) -> None:
    raise sqlite3.OperationalError("database or disk is full")


@pytest.mark.parametrize(
    ("command", "storage", "write", "fail"),
    [
        ("export-foxglove", [], "mcap.writer.Writer.add_message", _disk_full),
        ("export-ros2", [], "rosbags.rosbag2.storage_sqlite3.Sqlite3Writer.write", _sqlite_full),
        ("export-ros2", ["--storage", "mcap"], "rosbags.rosbag2.storage_mcap.McapWriter.write", _disk_full),
        ("import-ros2", [], "fusion_pipeline.logs.writer._DirectFile.write", _disk_full),
    ],
)
def test_a_full_disk_is_a_one_line_error_and_leaves_nothing(
    demo_log: Path,
    demo_bag: Path,
    tmp_path: Path,
    capsys,
    monkeypatch: pytest.MonkeyPatch,
    command: str,
    storage: list[str],
    write: str,
    fail: Callable[..., None],
) -> None:
    out = tmp_path / "out"
    capsys.readouterr()
    monkeypatch.setattr(write, fail)
    err = _fails(capsys, *_conversion(command, demo_log, demo_bag, out), *storage)
    assert err.startswith(f"fusion-pipeline {command}: error: {out}") and err.count("\n") == 1, err
    assert "full" in err or "No space left on device" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", ["export-foxglove", "export-ros2"])
def test_exports_read_each_log_through_on_its_own(demo_log: Path, tmp_path: Path, command: str) -> None:
    """A recording and its --results log are two sources, not the parts of one recording: the read
    through before the export refused the second as going back in time."""
    results = tmp_path / "results.mcap"
    with LogWriter(results) as writer:
        writer.write(Sample("result/fused", "result", 0, 1, {"p": np.zeros(2, np.float32)}, ""), 1)
    assert main([command, str(demo_log), str(results), "-o", str(tmp_path / "out")]) == 0


@pytest.mark.parametrize("command", ["export-foxglove", "export-ros2"])
def test_an_export_of_no_message_is_refused_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    """It wrote an empty output and exited 0."""
    empty = tmp_path / "empty.mcap"
    LogWriter(empty).close()
    assert main([command, str(empty), "-o", str(tmp_path / "out")]) == 2
    assert f"error: nothing to export: no message in {empty}" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["empty.mcap"]


@pytest.mark.parametrize("command", ["export-foxglove", "export-ros2"])
def test_replayed_results_are_exported_beside_the_data_they_came_from(
    demo_log: Path, tmp_path: Path, command: str
) -> None:
    """A results file a replay wrote has the replay's wall clock as log times: exported with its recording,
    the results sat years after the sensor data (a Foxglove timeline, a bag's duration of 3 years)."""
    results = tmp_path / "results.mcap"
    assert main(["replay", str(demo_log), "--offline", "--no-progress", "--results", str(results)]) == 0
    out = tmp_path / "out"
    assert main([command, str(demo_log), str(results), "-o", str(out)]) == 0
    files = [out] if out.is_file() else sorted(out.glob("*.mcap"))
    if not files:  # a sqlite3 bag: its messages table holds the timestamps
        with sqlite3.connect(next(out.glob("*.db3"))) as db:
            times = {t: list(ns) for t, *ns in db.execute(
                "SELECT topics.name, MIN(timestamp), MAX(timestamp) FROM messages "
                "JOIN topics ON topics.id = messages.topic_id GROUP BY topics.name"
            )}  # fmt: skip
    else:
        times = {}
        with open(files[0], "rb") as f:
            for _, channel, message in make_reader(f).iter_messages():
                span = times.setdefault(channel.topic, [message.log_time, message.log_time])
                span[0], span[1] = min(span[0], message.log_time), max(span[1], message.log_time)
    results_span = times.pop("/result/fused")
    sensors = [min(s[0] for s in times.values()), max(s[1] for s in times.values())]
    assert sensors[0] <= results_span[0] and results_span[1] <= sensors[1] + 10**9


@pytest.mark.parametrize("command", sorted(_PER_MESSAGE))
def test_a_conversion_refuses_an_existing_output_before_reading_its_input(
    command: str, demo_log: Path, demo_bag: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """import-ros2 opened the bag first, then refused in words of its own ("not overwriting a log")."""
    out = tmp_path / "taken"
    out.write_text("kept")
    err = _fails(capsys, *_conversion(command, demo_log, demo_bag, out))
    assert f"-o {out}: exists already, not overwriting it" in err and out.read_text() == "kept"
