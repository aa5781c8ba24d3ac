"""`fusion-pipeline config`: check a config as `run` would with nothing started, print a shipped config
or the systemd unit (an installed copy has no repository to copy them from)."""

from __future__ import annotations

from pathlib import Path

import pytest
from paths import ROOT

from fusion_pipeline.cli import main


def test_check_accepts_the_shipped_configs_and_refuses_a_bad_one_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("demo.toml", "surround.toml", "imu.toml"):
        assert main(["config", "check", "-c", f"package:{name}"]) == 0
        assert f"package:{name}: ok: pipeline " in capsys.readouterr().out
    bad = tmp_path / "bad.toml"
    bad.write_text((ROOT / "configs" / "demo.toml").read_text().replace("rate_hz = 30", "rate_hz = -30", 1))
    assert main(["config", "check", "-c", str(bad)]) == 2
    assert "rate_hz" in capsys.readouterr().err
    nothing = tmp_path / "no-such.toml"
    assert main(["config", "check", "-c", str(nothing)]) == 2
    assert f"{nothing}: cannot read config" in capsys.readouterr().err


def test_check_refuses_what_run_refuses_before_it_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A certificate that is not there: the host's checks, not only the keys and values. A record.path
    that is a directory: the recorder wrote beside it, as NAME-1 with no suffix."""
    demo = (ROOT / "configs" / "demo.toml").read_text()
    text = demo.replace("[security]\n", f'[security]\ncertificate = "{tmp_path}/none"\n', 1)
    path = tmp_path / "keys.toml"
    path.write_text(text)
    assert main(["config", "check", "-c", str(path)]) == 2
    assert "certificate" in capsys.readouterr().err
    (tmp_path / "logs").mkdir()
    record = demo.replace("enabled = false         # true: `run` also records", "enabled = true #", 1)
    path.write_text(record.replace('path = "demo.mcap"', f'path = "{tmp_path}/logs"', 1))
    assert main(["config", "check", "-c", str(path)]) == 2
    assert f"record.path {tmp_path}/logs: a directory" in capsys.readouterr().err


def test_check_refuses_a_run_dir_too_long_for_the_supervisors_own_socket(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every endpoint of the config elsewhere, the run dir only holds the supervisor's sockets: `config
    check` left them out, and said ok to a run_dir that `run` refused."""
    run_dir = tmp_path / ("d" * (100 - len(str(tmp_path))))
    demo = (ROOT / "configs" / "demo.toml").read_text().replace("ipc://{run_dir}/", f"ipc://{tmp_path}/")
    path = tmp_path / "long.toml"
    path.write_text(demo.replace('run_dir = ""', f'run_dir = "{run_dir}"', 1))
    assert main(["config", "check", "-c", str(path)]) == 2
    assert "status socket" in capsys.readouterr().err


def test_show_and_unit_print_the_shipped_files(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "show"]) == 0
    assert capsys.readouterr().out == (ROOT / "configs" / "demo.toml").read_text()
    assert main(["config", "show", "-c", "package:surround.toml"]) == 0
    assert capsys.readouterr().out == (ROOT / "configs" / "surround.toml").read_text()
    assert main(["config", "unit"]) == 0
    unit = capsys.readouterr().out
    assert unit == (ROOT / "configs" / "fusion-pipeline.service").read_text()
    assert "ExecStart=/opt/fusion-pipeline/venv/bin/fusion-pipeline run" in unit


def test_check_refuses_a_run_dir_others_can_enter_and_says_relative_paths(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """`run` refused a run_dir of mode 0755 when it bound there, `config check` said ok; and a relative
    path is read from where the command runs, which for the service is its unit's WorkingDirectory."""
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    demo = (ROOT / "configs" / "demo.toml").read_text()
    path = tmp_path / "shared.toml"
    path.write_text(demo.replace('run_dir = ""', f'run_dir = "{shared}"', 1))
    said = f"{path}: pipeline.run_dir: endpoint 'ipc://{shared}/control.sock'"
    for command in (["config", "check"], ["run", "--duration", "1"]):  # one check, said alike
        assert main([*command, "-c", str(path)]) == 2
        assert said in capsys.readouterr().err
    assert list(shared.iterdir()) == []
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "mine.onnx").write_bytes(
        (ROOT / "fusion_pipeline/models/default.onnx").read_bytes()
    )
    relative = tmp_path / "relative.toml"
    text = demo.replace('path = ""', 'path = "models/mine.onnx"', 1)
    relative.write_text(text.replace('run_dir = ""', 'run_dir = "run"', 1))
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path)
        assert main(["config", "check", "-c", str(relative)]) == 0
    assert f"relative paths, read from the working directory (here {tmp_path}" in caplog.text
    # The run dir too: `status`, `record` and `view` find the run only from the same directory.
    assert "pipeline.run_dir = run, model.path = models/mine.onnx" in caplog.text


def test_every_simulated_driver_mistake_is_said_at_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One edit-and-check round per mistake, in another format than the other keys' errors."""
    demo = (ROOT / "configs" / "demo.toml").read_text()
    text = demo.replace("rate_hz = 30\n", "rate_hz = 30\nsim = { fov_dg = 60 }\n", 1)
    text = text.replace("rate_hz = 20\n", "rate_hz = 20\nsim = { drop_prob = 2 }\n", 1)
    path = tmp_path / "sim.toml"
    path.write_text(text)
    assert main(["config", "check", "-c", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: invalid config:\n  streams[camera/front].sim: unknown keys ['fov_dg']" in err
    assert "\n  streams[radar/front].sim.drop_prob: must be in [0, 1], got 2" in err
