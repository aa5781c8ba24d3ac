"""The log commands, run in this process on real files and sockets: options that would be ignored are
refused, a report is never written over, and a failed recording leaves no log behind. The commands as a
user runs them, end to end: tests/process/test_cli_logs.py, test_record.py, test_offline_replay.py."""

import json
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from commands import sample_log

from fusion_pipeline.cli import main
from fusion_pipeline.logs import LogError, Recorder


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
    "command", [("replay", "--offline", "--no-progress"), ("export-foxglove", "-o"), ("export-ros2", "-o")]
)
def test_a_log_given_twice_is_refused(
    demo_log: Path, tmp_path: Path, capsys, command: tuple[str, ...]
) -> None:
    again = demo_log.parent / ".." / demo_log.parent.name / demo_log.name  # another spelling of it
    out = [str(tmp_path / "out")] if command[-1] == "-o" else []
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
    assert json.loads(fresh.read_text())["sent"]["lidar/top"] > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fresh.json", "report.json"]


def test_record_report_is_never_written_over(tmp_path: Path, capsys) -> None:
    report, out = tmp_path / "report.json", tmp_path / "rec.mcap"
    report.write_text("kept\n")
    command = ("record", str(out), "--run-dir", str(tmp_path), "--duration", "0.1")
    err = _fails(capsys, *command, "--report-json", str(report))
    assert f"--report-json {report}: exists already" in err
    assert report.read_text() == "kept\n" and not out.exists()  # refused before recording


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
    err = _fails(capsys, "replay", str(demo_log), "--offline", "--no-progress", "--results", str(results))
    assert f"stopped before the end of the log: --results {results} not written" in err
    assert list(tmp_path.iterdir()) == []
    # Its report neither: the figures of part of the log would pass for the whole log's.
    err = _fails(capsys, "replay", str(demo_log), "--offline", "--no-progress", "--report-json", str(report))
    assert f"stopped before the end of the log: --report-json {report} not written" in err
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    assert main(["replay", str(demo_log), "--offline", "--no-progress", "--results", str(results)]) == 0
    assert [p.name for p in tmp_path.iterdir()] == ["r.mcap"]
