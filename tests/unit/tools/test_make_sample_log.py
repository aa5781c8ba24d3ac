"""tools/make_sample_log.py: a bad config or an existing output is said in one line (exit 2), and the
existing log is left as it was."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from paths import ROOT

sys.path.insert(0, str(ROOT / "tools"))  # a script of tools/, not a package

import make_sample_log  # noqa: E402


def test_an_existing_output_is_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "kept.mcap"
    out.write_bytes(b"someone's log")
    with pytest.raises(SystemExit) as exited:
        make_sample_log.main(["-o", str(out), "--duration", "0.1"])
    assert exited.value.code == 2
    assert f"{out} exists already" in capsys.readouterr().err
    assert out.read_bytes() == b"someone's log"


def test_a_missing_config_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        make_sample_log.main(["-c", str(tmp_path / "nope.toml"), "-o", str(tmp_path / "x.mcap")])
    assert exited.value.code == 2
    assert "nope.toml: cannot read config" in capsys.readouterr().err
    assert not (tmp_path / "x.mcap").exists()
