"""`fusion-pipeline view` refuses an option where it would do nothing, and takes the config's [view] for
what its options leave out. In this process, before any viewer starts."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

from fusion_pipeline.cli.commands import build_parser, main
from fusion_pipeline.cli.view import _settings
from fusion_pipeline.config import load_config, parse_config
from fusion_pipeline.logs import LogWriter
from fusion_pipeline.transport import Sample


@pytest.mark.parametrize(
    ("options", "refused"),
    [
        (["--max-hz", "5", "--save", "OUT"], "--max-hz (a log's views show every message)"),
        (["--run-dir", "/tmp", "--web"], "--run-dir (the views come from the log files)"),
        (["--save", "OUT", "--duration", "3"], "--duration (nothing is served once the log is in --save)"),
        (["--save", "OUT", "--web-port", "0"], "--web-port (only with --web)"),
        (["--web", "--foxglove-port", "0"], "--foxglove-port (only with --foxglove)"),
    ],
)
def test_an_option_that_does_nothing_with_a_log_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], options: list[str], refused: str
) -> None:
    log = tmp_path / "demo.mcap"
    log.write_bytes(b"")  # refused before it is read
    argv = ["view", str(log), *(str(tmp_path / "v.rrd") if o == "OUT" else o for o in options)]
    assert main(argv) == 2
    assert f"{refused} does nothing here" in capsys.readouterr().err
    assert not (tmp_path / "v.rrd").exists()


def test_run_dir_beside_a_live_target_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["view", "ipc:///tmp/x.sock", "--run-dir", "/tmp", "--duration", "1"]) == 2
    assert "--run-dir (ipc:///tmp/x.sock names what to view) does nothing here" in capsys.readouterr().err


def _args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["view", *argv])


def test_the_config_view_section_fills_what_the_options_leave_out() -> None:
    demo = (Path(__file__).parents[3] / "configs" / "demo.toml").read_text()
    assert "[view]" not in demo and load_config(None).view.max_hz == 0.0
    config = parse_config(demo + "\n[view]\nmax_hz = 10.0\nweb_port = 9100\nsave = 'node.rrd'\n")
    taken = _settings(_args("--web"), config)
    assert (taken.max_hz, taken.web_port, taken.web) == (10.0, 9100, True)
    assert taken.save is None  # the node's output, not this command's
    given = _settings(_args("--web", "--max-hz", "0", "--web-port", "0"), config)
    assert (given.max_hz, given.web_port) == (0.0, 0)


def test_a_log_that_fails_to_read_leaves_no_recording(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The .rrd is put in place only when the whole log was shown: a retry with a good log is not refused."""
    pytest.importorskip("rerun")
    log = tmp_path / "broken.mcap"
    log.write_bytes(b"not a log")
    assert main(["view", str(log), "--save", str(tmp_path / "v.rrd")]) == 2
    assert str(log) in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.mcap"]  # no .rrd, no partial


@pytest.mark.parametrize("cut", [False, True], ids=["empty", "cut-before-its-first-message"])
def test_a_log_with_no_message_to_show_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], cut: bool
) -> None:
    """It wrote an .rrd of nothing and exited 0 (a log cut short before its first message: a warning)."""
    pytest.importorskip("rerun")
    log = tmp_path / "log.mcap"
    writer = LogWriter(log)
    if cut:
        writer.write(Sample("radar/front", "radar", 1, 1, arrays={"points": np.zeros((4, 5), np.float32)}), 1)
    writer.close()
    if cut:
        log.write_bytes(log.read_bytes()[:300])
    assert main(["view", str(log), "--save", str(tmp_path / "v.rrd")]) == 2
    assert f"fusion-pipeline view: error: nothing to show: no message in {log}" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log.mcap"]  # no .rrd, no partial
