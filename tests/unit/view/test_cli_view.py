"""`fusion-pipeline view`'s own messages and refusals, and the live summary (in this process)."""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rerun")
pytest.importorskip("foxglove")

from security import refusing_driver  # noqa: E402

from fusion_pipeline.cli.commands import main  # noqa: E402
from fusion_pipeline.cli.view import _serve_until_stopped  # noqa: E402
from fusion_pipeline.config import load_config  # noqa: E402
from fusion_pipeline.transport.wire import Sample  # noqa: E402
from fusion_pipeline.view import LiveView, Views, ViewSettings, summary  # noqa: E402


def test_foxglove_with_a_log_is_refused_for_export_foxglove(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A log's messages all went out before any client could connect: the client got nothing."""
    log = tmp_path / "demo.mcap"
    log.write_bytes(b"")  # refused before it is read
    assert main(["view", str(log), "--foxglove"]) == 2
    err = capsys.readouterr().err
    assert "--foxglove (a log's messages would all be sent before a client could connect" in err
    assert "fusion-pipeline export-foxglove" in err and "does nothing here" in err


@pytest.mark.parametrize(
    ("made", "why"),
    [
        ("", "no such directory"),
        ("dir", "no status.sock in it"),
        ("left", "no supervisor serves its status.sock: one that was killed left it"),
    ],
)
def test_a_directory_with_no_running_pipeline_is_refused_at_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], made: str, why: str
) -> None:
    """It waited for messages that could never come (no supervisor serves there), then said "nothing
    received ... is it running?" only after --duration, or never without one."""
    target = tmp_path / "run"
    if made:
        target.mkdir()
    if made == "left":  # the socket file of a supervisor killed with SIGKILL
        with socket.socket(socket.AF_UNIX) as left:
            left.bind(str(target / "status.sock"))
    assert main(["view", str(target), "--duration", "30"]) == 2
    assert f"view: {target} is not a running pipeline's run directory ({why})" in capsys.readouterr().err


def test_a_taken_foxglove_port_given_as_an_option_is_not_named_as_a_config_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """It said "view.foxglove_port" of a port given as --foxglove-port, with no such key in any config."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        argv = ["view", f"ipc://{tmp_path}/none.sock", "--foxglove", "--foxglove-port", str(port)]
        assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"Foxglove WebSocket port {port}: cannot serve on 127.0.0.1" in err and "view." not in err


def test_a_live_view_of_a_driver_refusing_its_key_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """It said "(is it running?)" of a driver that runs and refused this host's key."""
    config = tmp_path / "host.toml"
    with refusing_driver(tmp_path) as (endpoint, text):
        config.write_text(text)
        argv = ["view", endpoint, "-c", str(config), "--save", str(tmp_path / "v.rrd"), "--duration", "2.5"]
        assert main(argv) == 1
    err = capsys.readouterr().err
    assert f"; handshakes failing: {endpoint}: the CURVE server refused this client's key" in err


def test_serving_for_a_duration_says_how_long(capsys: pytest.CaptureFixture[str]) -> None:
    _serve_until_stopped(0.01)
    assert capsys.readouterr().out == "serving for 0.01 s; Ctrl-C stops it sooner\n"


def test_audio_not_sent_to_foxglove_is_reported() -> None:
    """With --foxglove only, the summary said "audio/roof: shown N of N" though Foxglove got none of it
    (it has no schema for audio): the count is in the counters and the summary."""
    views = Views(load_config(None), ViewSettings(foxglove=True, foxglove_port=0))
    try:
        live = LiveView([], views)
        chunks = [
            Sample("audio/roof", "audio", seq, 1_000 * seq, {"samples": np.zeros(160, np.float32)})
            for seq in range(3)
        ]
        for sample in live.tally.keep(chunks):
            views.show(sample, 0)
        counters = live.counters()
    finally:
        views.close()
    assert counters["audio/roof.shown"] == counters["audio/roof.foxglove_no_schema"] == 3
    text = summary(counters)
    assert "audio/roof: shown 3 of 3, skipped 0, lost upstream 0, not sent to Foxglove 3" in text
    assert "\n" not in summary(counters, "; ")  # the viewer node's log line


def test_a_served_address_is_said_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """`view --foxglove` printed its URL and logged it too: twice on the terminal."""
    endpoint = f"ipc://{tmp_path}/none.sock"
    with caplog.at_level("INFO"):
        assert main(["view", endpoint, "--foxglove", "--foxglove-port", "0", "--duration", "0.3"]) == 1
    out = capsys.readouterr().out
    said = [line for line in out.splitlines() if line.startswith("Foxglove WebSocket: ws://127.0.0.1:")]
    assert len(said) == 1, out
    assert "Foxglove WebSocket" not in caplog.text
