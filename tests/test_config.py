"""Config: the demo loads from anywhere; every error names the file, the key path and what was expected."""

from pathlib import Path

import pytest

from fusion_pipeline.config import ConfigError, load_config, parse_config

DEMO_PATH = Path(__file__).parents[1] / "configs" / "demo.toml"
DEMO = DEMO_PATH.read_text()


def test_embedded_demo_config_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the embedded default must not depend on the working directory
    config = load_config()
    assert [s.modality for s in config.streams] == ["camera", "lidar", "radar", "audio"]
    assert config.sync.reference == "lidar/top" and config.stream("audio/roof").sample_rate == 16000
    assert config.stream("lidar/top").required and not config.stream("camera/front").required
    assert config.endpoint(config.sync.endpoint, "/run/x") == "ipc:///run/x/sets.sock"
    limits = config.stream("camera/front").limits.to_limits()
    assert limits.max_array_bytes == 64 * 1024 * 1024


def test_repository_demo_is_the_embedded_one() -> None:
    assert load_config(DEMO_PATH) == load_config()


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ('modality = "radar"', 'modality = "radr"', "streams[2].modality: Input should be 'camera', 'lidar'"),
        ("queue_size = 10", "queue_size = 0", "sync.queue_size: Input should be greater than 0 (got 0)"),
        ('reference = "lidar/top"', 'reference = "lidar"', "sync.reference: 'lidar' is not a stream"),
        ("sample_rate = 16000", "", "streams[3].sample_rate: required for an audio stream"),
        ('name = "radar/front"', 'name = "lidar/top"', "streams[2].name: duplicate stream name 'lidar/top'"),
        ("heartbeat_ms = 500", "heartbeat_ms = 500\nheartbeat = 1", "pipeline.heartbeat: Extra inputs"),
        (
            'endpoint = "ipc://{run_dir}/sets.sock"',
            'endpoint = "udp://x:1"',
            "sync.endpoint: endpoint 'udp://x:1'",
        ),
        ("rate_hz = 30", 'rate_hz = "fast"', "streams[0].rate_hz: Input should be a valid number"),
        # Strict: TOML has real types, so a quoted number or a 1 for true is a mistake, not a conversion.
        ("rate_hz = 30", 'rate_hz = "30"', "streams[0].rate_hz: Input should be a valid number (got '30')"),
        ("required = true", 'required = "yes"', "streams[1].required: Input should be a valid boolean"),
        ("tf32 = true", "tf32 = 1", "model.tf32: Input should be a valid boolean (got 1)"),
        (
            "heartbeat_ms = 500",
            "heartbeat_ms = 6000",
            "pipeline.heartbeat_ms: Input should be less than or equal",
        ),
        (
            "realtime_priority = 0",
            "realtime_priority = 100",
            "pipeline.realtime_priority: Input should be less than or equal to 99",
        ),
        (
            'reference = "lidar/top"',
            'reference = "audio/roof"',
            "sync.reference: an audio stream is continuous",
        ),
    ],
)
def test_errors_name_file_key_and_expectation(tmp_path: Path, old: str, new: str, expected: str) -> None:
    assert old in DEMO
    path = tmp_path / "bad.toml"
    path.write_text(DEMO.replace(old, new, 1))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}: invalid config")
    assert expected in message


def test_tcp_needs_curve_unless_insecure(tmp_path: Path) -> None:
    tcp = DEMO.replace('endpoint = "ipc://{run_dir}/results.sock"', 'endpoint = "tcp://0.0.0.0:5600"')
    with pytest.raises(ConfigError, match=r"output.endpoint: tcp endpoint 'tcp://0.0.0.0:5600' needs CURVE"):
        parse_config(tcp, "tcp.toml")
    assert parse_config(tcp.replace("insecure = false", "insecure = true")).security.curve() is None
    secured = parse_config(
        tcp.replace("insecure = false", 'certificate = "k/p.key_secret"\nauthorized_keys = "k/ok"')
    )
    curve = secured.security.curve()
    assert curve is not None and str(curve.server_key) == "k/p.key" and str(curve.authorized_keys) == "k/ok"


def test_not_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"x\.toml: not valid TOML"):
        parse_config("[pipeline\n", "x.toml")
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "absent.toml")
    with pytest.raises(ConfigError, match="streams: Field required"):
        parse_config("[pipeline]\n", "y.toml")
