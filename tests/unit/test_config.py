"""Config: the demo loads from anywhere; every error names the file, the key path and what was expected."""

import tempfile
from importlib import resources
from pathlib import Path

import pytest
from node_harness import write_config
from paths import ROOT

from fusion_pipeline.cli.run import preflight
from fusion_pipeline.config import (
    StreamConfig,
    check_run_dir,
    doubtful_settings,
    load_config,
    load_security,
    parse_config,
    shipped,
)
from fusion_pipeline.errors import ConfigError
from fusion_pipeline.inference import load_bindings
from fusion_pipeline.protocol import Curve
from fusion_pipeline.transport import Limits

DEMO_PATH = ROOT / "configs" / "demo.toml"
DEMO = DEMO_PATH.read_text()


def test_embedded_demo_config_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the embedded default must not depend on the working directory
    config = load_config()
    assert [s.modality for s in config.streams] == ["camera", "lidar", "radar", "audio"]
    assert config.sync.reference == "lidar/top" and config.stream("audio/roof").sample_rate == 16000
    assert config.stream("lidar/top").required and not config.stream("camera/front").required
    assert config.endpoint(config.sync.endpoint, "/run/x") == "ipc:///run/x/sets.sock"
    limits = Limits.from_config(config.stream("camera/front").limits)
    assert limits.max_array_bytes == 64 * 1024 * 1024


def test_repository_demo_is_the_embedded_one() -> None:
    assert load_config(DEMO_PATH) == load_config()


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ('modality = "radar"', 'modality = "radr"', "streams[2].modality: Input should be 'camera', 'lidar'"),
        ("queue_size = 10", "queue_size = 0", "sync.queue_size: Input should be greater than 0 (got 0)"),
        # What the synchronizer refuses at its start (it crash-looped where config check said ok).
        (
            'mode = "reference"\nreference = "lidar/top"',
            'mode = "approximate"\nreference = "nonsense"',
            "sync.reference: 'nonsense' is not a stream",
        ),
        (
            "audio_window_ms = 500",
            "audio_window_ms = 499.99",
            "sync.audio_window_ms: 499.99 ms is not a whole number of samples at streams[3].sample_rate",
        ),
        # Numbers past any real setting: they passed, then crashed a node turning them into integers.
        (
            "audio_window_ms = 500",
            "audio_window_ms = 1e308",
            "sync.audio_window_ms: Input should be less than or equal to 3600000 (got 1e+308)",
        ),
        (
            "hwm = 64",
            "hwm = 100000000000000000000",
            "output.hwm: Input should be less than or equal to 1000000",
        ),
        (
            'input = "camera"',
            'input = "camera"\nlimits = { max_array_mb = 1e308 }',
            "streams[0].limits.max_array_mb: Input should be less than or equal to 65536",
        ),
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
        ('input = "camera"', "input = 3", "streams[0].input: Input should be a valid string (got 3)"),
        (
            "tf32 = true",
            'tf32 = true\nunbound_inputs = "audio"',
            "model.unbound_inputs: Input should be a valid list (got 'audio')",
        ),
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
        ('providers = ["auto"]', 'providers = ["cpu", "cpu"]', "model.providers[1]: 'cpu' is given twice"),
        # A setting the chosen mode never reads is a mistake to say, not a value to drop.
        (
            "queue_size = 10",
            "queue_size = 10\nage_penalty = 0.5",
            "sync.age_penalty: weighs candidate sets in",
        ),
        (
            'providers = ["auto"]    # auto = TensorRT (if tensorrt = true) > CUDA > CPU\ntensorrt = false',
            'providers = ["cuda"]\ntensorrt = true',
            "model.tensorrt: opts TensorRT into",
        ),
        ("insecure = false", 'insecure = false\nserver_key = "s.key"', "security.server_key: used only with"),
        # TOML spells inf and nan; no rate, wait or offset means either (they failed deep in a node).
        ("rate_hz = 30", "rate_hz = inf", "streams[0].rate_hz: Input should be a finite number"),
        ("offset_ms = 0.0", "offset_ms = nan", "streams[0].offset_ms: Input should be a finite number"),
        ("max_wait_ms = 60", "max_wait_ms = inf", "sync.max_wait_ms: Input should be a finite number"),
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


def test_an_endpoint_is_quoted_as_written(tmp_path: Path) -> None:
    path = tmp_path / "icp.toml"
    path.write_text(
        DEMO.replace('endpoint = "ipc://{run_dir}/results.sock"', 'endpoint = "icp://{run_dir}/r.sock"')
    )
    with pytest.raises(ConfigError, match=r"output.endpoint: endpoint 'icp://\{run_dir\}/r.sock': scheme"):
        load_config(path)


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


def _with(*replacements: tuple[str, str]) -> str:
    text = DEMO
    for old, new in replacements:
        assert old in text
        text = text.replace(old, new, 1)
    return text


def test_an_allow_list_of_any_key_is_refused() -> None:
    text = _with(("insecure = false", 'certificate = "k/p.key_secret"\nauthorized_keys = "*"'))
    with pytest.raises(ConfigError, match=r"security.authorized_keys: '\*' would admit any client key"):
        parse_config(text, "star.toml")


SENSOR = 'endpoint = "ipc://{run_dir}/sensor-radar_front.sock"'
RESULTS = 'endpoint = "ipc://{run_dir}/results.sock"'
TCP = ("insecure = false", "insecure = true")


@pytest.mark.parametrize(
    ("replacements", "expected"),
    [
        (
            [(SENSOR, 'endpoint = "ipc://{run_dir}/sensor-lidar_top.sock"')],
            "streams[2].endpoint: 'ipc://{run_dir}/sensor-lidar_top.sock' collides with "
            "streams[1].endpoint ('ipc://{run_dir}/sensor-lidar_top.sock'): the same ipc path",
        ),
        (  # the same path written another way
            [(SENSOR, 'endpoint = "ipc://{run_dir}/./x/../sets.sock"')],
            "sync.endpoint: 'ipc://{run_dir}/sets.sock' collides with streams[2].endpoint",
        ),
        (  # a leading "//" is one "/" to libzmq (normpath keeps it: POSIX allows it to mean more)
            [(RESULTS, 'endpoint = "ipc:///{run_dir}/sensor-radar_front.sock"')],
            "output.endpoint: 'ipc:///{run_dir}/sensor-radar_front.sock' collides with streams[2].endpoint "
            "('ipc://{run_dir}/sensor-radar_front.sock'): the same ipc path",
        ),
        (
            [(RESULTS, 'endpoint = "ipc://{run_dir}/ingest-camera_front.sock"')],
            "output.endpoint: 'ipc://{run_dir}/ingest-camera_front.sock' collides with "
            "streams[0].ingest_endpoint",
        ),
        (  # a wildcard host binds the port on every address
            [
                TCP,
                (SENSOR, 'endpoint = "tcp://0.0.0.0:5555"'),
                (RESULTS, 'endpoint = "tcp://127.0.0.1:5555"'),
            ],
            "output.endpoint: 'tcp://127.0.0.1:5555' collides with streams[2].endpoint ('tcp://0.0.0.0:5555')",
        ),
        (
            [TCP, (SENSOR, 'endpoint = "tcp://*:5555"'), (RESULTS, 'endpoint = "tcp://localhost:5555"')],
            "output.endpoint: 'tcp://localhost:5555' collides with streams[2].endpoint ('tcp://*:5555')",
        ),
        (
            [
                TCP,
                (SENSOR, 'endpoint = "tcp://localhost:5555"'),
                (RESULTS, 'endpoint = "tcp://127.0.0.1:5555"'),
            ],
            "output.endpoint: 'tcp://127.0.0.1:5555' collides with streams[2].endpoint",
        ),
        (  # a port is a number: leading zeros name the same one
            [
                TCP,
                (SENSOR, 'endpoint = "tcp://127.0.0.1:05755"'),
                (RESULTS, 'endpoint = "tcp://127.0.0.1:5755"'),
            ],
            "output.endpoint: 'tcp://127.0.0.1:5755' collides with streams[2].endpoint "
            "('tcp://127.0.0.1:05755'): the same tcp address",
        ),
        (
            [TCP, (SENSOR, 'endpoint = "tcp://*:005755"'), (RESULTS, 'endpoint = "tcp://localhost:5755"')],
            "('tcp://*:005755'): a wildcard host takes tcp port 5755 on every address",
        ),
        (  # the supervisor's metrics take a tcp port too
            [TCP, (RESULTS, 'endpoint = "tcp://0.0.0.0:9464"')],
            "metrics.address: 'tcp://127.0.0.1:9464' collides with output.endpoint ('tcp://0.0.0.0:9464')",
        ),
        (  # an external driver's endpoint that this host binds too
            [(SENSOR, f'{SENSOR}\ndriver = "external"'), (RESULTS, SENSOR)],
            "output.endpoint: 'ipc://{run_dir}/sensor-radar_front.sock' collides with streams[2].endpoint",
        ),
        (  # {stream} is the name with "/" made "_": two names, one ingest socket, said by the names
            [('name = "radar/front"', 'name = "camera_front"')],
            "streams[2].name: 'camera_front' and streams[0].name 'camera/front' make one name, "
            "'camera_front', where a name holds no '/' (the default ingest endpoint, the model input",
        ),
        (  # the viewer node's servers take tcp ports of this host (they failed in its restarts)
            [("hwm = 64", "hwm = 64\n[view]\nenabled = true\nweb = true\nweb_port = 9000\ngrpc_port = 9000")],
            "view.grpc_port: 'tcp://127.0.0.1:9000' collides with view.web_port",
        ),
        (
            [("hwm = 64", "hwm = 64\n[view]\nenabled = true\nfoxglove = true\nfoxglove_port = 9464")],
            "view.foxglove_port: 'tcp://127.0.0.1:9464' collides with metrics.address",
        ),
    ],
)
def test_colliding_endpoints_are_refused_naming_both_keys(replacements, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(_with(*replacements), "clash.toml")
    assert str(info.value).startswith("clash.toml: invalid config")
    assert expected in str(info.value)


@pytest.mark.parametrize(
    "replacements",
    [
        # One external driver may publish several streams on one socket (each ingest subscribes to its own).
        [
            (SENSOR, 'endpoint = "tcp://10.0.0.7:5555"\ndriver = "external"'),
            (
                'endpoint = "ipc://{run_dir}/sensor-camera_front.sock"',
                'endpoint = "tcp://10.0.0.7:5555"\ndriver = "external"',
            ),
            TCP,
        ],
        # A remote driver on the port this host binds on every address, distinct addresses, a wildcard port.
        [
            TCP,
            (SENSOR, 'endpoint = "tcp://10.0.0.7:5555"\ndriver = "external"'),
            (RESULTS, 'endpoint = "tcp://*:5555"'),
        ],
        [TCP, (SENSOR, 'endpoint = "tcp://127.0.0.2:5555"'), (RESULTS, 'endpoint = "tcp://127.0.0.1:5555"')],
        [TCP, (SENSOR, 'endpoint = "tcp://127.0.0.1:*"'), (RESULTS, 'endpoint = "tcp://127.0.0.1:*"')],
        [TCP, ("enabled = true", "enabled = false"), (RESULTS, 'endpoint = "tcp://127.0.0.1:9464"')],
    ],
)
def test_endpoints_that_do_not_collide_pass(replacements) -> None:
    parse_config(_with(*replacements))


def test_ipc_paths_over_the_sun_path_limit_are_refused() -> None:
    long = "/tmp/" + "d" * 100 + "/results.sock"
    with pytest.raises(ConfigError, match=rf"output.endpoint: ipc path '{long}' is 118 bytes, over the 107"):
        parse_config(_with((RESULTS, f'endpoint = "ipc://{long}"')))
    config = parse_config(DEMO)
    run_dir = Path("/tmp/" + "r" * 77)
    check_run_dir(config, run_dir, "demo.toml")  # 82 bytes + the longest /socket name (25) fit
    with pytest.raises(ConfigError) as info:
        check_run_dir(config, run_dir / "deeper", "demo.toml")
    message = str(info.value)
    assert message.startswith(f"demo.toml: invalid config for run dir {run_dir}/deeper:")
    assert (
        f"streams[0].endpoint: ipc path '{run_dir}/deeper/sensor-camera_front.sock' is 114 bytes" in message
    )
    assert "sync.endpoint" not in message  # {run_dir}/deeper/sets.sock: 99 bytes


def test_a_run_dir_that_makes_two_endpoints_one_is_refused() -> None:
    text = _with((RESULTS, 'endpoint = "ipc:///run/fp/sets.sock"'))
    config = parse_config(text)  # the run dir is not known yet
    check_run_dir(config, Path("/run/other"), "x.toml")
    with pytest.raises(ConfigError, match=r"output.endpoint: 'ipc:///run/fp/sets.sock' collides with sync"):
        check_run_dir(config, Path("/run/fp"), "x.toml")
    control = ("the supervisor's control socket", "ipc:///run/fp/control.sock")
    taken = parse_config(_with((RESULTS, 'endpoint = "ipc://{run_dir}/control.sock"')))
    with pytest.raises(
        ConfigError, match="the supervisor's control socket: 'ipc:///run/fp/control.sock' collides"
    ):
        check_run_dir(taken, Path("/run/fp"), "x.toml", [control])


def test_the_stream_keys_and_their_host_rules_are_documented_where_a_new_user_looks() -> None:
    readme = (DEMO_PATH.parents[1] / "README.md").read_text()
    table = readme.split("Each `[[streams]]` entry is one sensor:", 1)[1].split("\n\n", 2)[1]
    cells = [line.split("|")[1].replace("`", "") for line in table.splitlines()[2:]]
    assert {key.strip() for cell in cells for key in cell.split(",")} == set(StreamConfig.model_fields)
    for text in (readme, DEMO):
        assert 'driver = "external"' in text or '`"external"`' in text
        assert "0700" in text and "107 bytes" in text
    embedded = resources.files("fusion_pipeline").joinpath("configs", "demo.toml").read_text()
    assert embedded == DEMO  # configs/demo.toml is the embedded file, comments included


def test_slowdown_is_a_factor_of_at_least_one() -> None:
    def config(slowdown: float) -> str:
        path = Path(tempfile.mkdtemp()) / "c.toml"
        return write_config(path, ["lidar"], model=f"slowdown = {slowdown}").read_text()

    assert parse_config(config(3)).model.slowdown == 3
    with pytest.raises(ConfigError, match="slowdown"):
        parse_config(config(0.5))


def test_live_only_settings_are_named_for_a_replay_and_the_offline_graph() -> None:
    text = DEMO.replace('path = "demo.mcap"', 'path = "demo.mcap"\n[view]\nenabled = true\nsave = "v.rrd"', 1)
    text = text.replace("realtime_priority = 0", "realtime_priority = 20", 1)
    text = text.replace("[record]\nenabled = false", "[record]\nenabled = true", 1)
    config = parse_config(text)
    assert config.live_only("replay") == ["record.enabled = true", "view.enabled = true"]
    assert config.live_only("offline") == [
        "record.enabled = true",
        "view.enabled = true",
        "pipeline.realtime_priority = 20",
    ]
    assert parse_config(DEMO).live_only("offline") == []


def test_a_shipped_config_is_read_as_package_name() -> None:
    """A wheel install had the surround model but not the config it needs (configs/ is the repository's)."""
    assert {"demo.toml", "imu.toml", "surround.toml"} <= set(shipped("configs"))
    surround = load_config("package:surround.toml")
    assert surround == load_config(ROOT / "configs" / "surround.toml")
    assert surround.model.path == "package:surround.onnx" and len(surround.streams) == 11
    with pytest.raises(
        ConfigError, match=r"package:nope.toml: no config of that name ships .*package:imu.toml"
    ):
        load_config("package:nope.toml")


@pytest.mark.parametrize(
    "path", sorted((ROOT / "configs").rglob("*.toml")), ids=lambda p: str(p.relative_to(ROOT / "configs"))
)
def test_every_config_in_the_repository_fits_its_model(path: Path) -> None:
    """configs/multihost/vehicle.toml failed `config check`: the model's camera and audio had no stream."""
    load_bindings(load_config(path))


def test_a_stream_name_under_replay_is_refused() -> None:
    """A stream named replay/skip or replay/end would be passed over, or end the sets, in every replay."""
    text = DEMO.replace('name = "radar/front"', 'name = "replay/skip"', 1)
    with pytest.raises(ConfigError, match=r"names under replay/ are the replay's own messages"):
        parse_config(text)


def test_generic_settings_that_cannot_work_at_the_streams_rate_are_doubted() -> None:
    """A 1 kHz IMU with window_ms = 0.5 gave each set 1 row of its 100, and a nearest tolerance of 0.1 us
    found no sample for most sets; `config check` accepted both without a word."""
    imu = (ROOT / "configs" / "imu.toml").read_text()
    assert list(doubtful_settings(parse_config(imu))) == []
    index = next(i for i, s in enumerate(parse_config(imu).streams) if s.name == "imu")
    short = imu.replace("window_samples = 100 ", "window_samples = 100\nwindow_ms = 0.5 ", 1)
    assert list(doubtful_settings(parse_config(short))) == [
        f"streams[{index}].generic.window_ms: 0.5 ms holds at most 1 of the 100 window_samples at rate_hz "
        "1000: every set's window is mostly empty"
    ]
    nearest = imu.replace('mode = "window" ', 'mode = "nearest"\ntolerance_ms = 0.0001 ', 1)
    nearest = nearest.replace("window_samples = 100 ", "", 1)
    (doubt,) = doubtful_settings(parse_config(nearest))
    assert doubt.startswith(f"streams[{index}].generic.tolerance_ms: 0.0001 ms is under half the period")


def test_a_max_wait_longer_than_the_queue_of_sets_is_doubted() -> None:
    """Past queue_size reference periods a set is decided before max_wait_ms: said, not silent."""
    assert list(doubtful_settings(load_config(None))) == []
    long = DEMO.replace("max_wait_ms = 60", "max_wait_ms = 1100", 1)
    (doubt,) = doubtful_settings(parse_config(long))
    assert doubt.startswith("sync.max_wait_ms: 1100 ms holds more than sync.queue_size (10) sets of the")


def test_the_reference_said_not_required_is_doubted() -> None:
    """It did nothing, without a word (a warning: a config that has it still starts)."""
    (doubt,) = doubtful_settings(parse_config(DEMO.replace("required = true", "required = false", 1)))
    assert doubt.startswith("streams[1].required: false does nothing on the reference stream")


def test_curve_keys_where_no_endpoint_is_tcp_are_doubted() -> None:
    """The keys secure tcp endpoints only: an ipc config with them ran plain, said nowhere."""
    keyed = DEMO.replace("insecure = false", 'certificate = "k/p.key_secret"\nauthorized_keys = "k/ok"', 1)
    (doubt,) = doubtful_settings(parse_config(keyed))
    assert doubt.startswith("security.certificate: no endpoint of this config is tcp")
    tcp = keyed.replace('"ipc://{run_dir}/results.sock"', '"tcp://127.0.0.1:5602"', 1)
    assert list(doubtful_settings(parse_config(tcp))) == []


def test_insecure_beside_a_certificate_is_refused() -> None:
    """CURVE was used and `insecure = true` ignored: a server then lacked its allow-list at run time."""
    both = DEMO.replace("insecure = false", 'insecure = true\ncertificate = "k/p.key_secret"', 1)
    with pytest.raises(ConfigError, match="security.insecure: true does nothing beside security.certificate"):
        parse_config(both, "both.toml")


def test_the_viewers_grpc_port_is_any_free_one_by_default() -> None:
    """Rerun's gRPC server answers any Host header: at a well-known port (9876) a web page whose name was
    rebound to 127.0.0.1 knew where to read the views from."""
    assert load_config(None).view.grpc_port == 0


@pytest.mark.parametrize("name", ["de mo/x", "..", ".hidden", "a" * 65, ""])
def test_a_pipeline_name_that_is_no_plain_file_name_is_refused(name: str) -> None:
    """It names the run file and the private run dir: "de mo/x" passed, and `run` crashed in mkdtemp."""
    text = (ROOT / "configs" / "demo.toml").read_text().replace('name = "demo"', f'name = "{name}"', 1)
    with pytest.raises(ConfigError, match="pipeline.name: String should match pattern"):
        parse_config(text)


def test_a_command_that_only_connects_takes_a_file_of_security_alone(tmp_path: Path) -> None:
    """echo, hz and topics -c: a consumer's host has keys, not a pipeline; what it gives is still checked."""
    alone = tmp_path / "consumer.toml"
    alone.write_text('[security]\ncertificate = "k/me.key_secret"\nserver_key = "k/server.key"\n')
    assert load_security(alone).curve() == Curve(Path("k/me.key_secret"), None, Path("k/server.key"))
    assert load_security(DEMO_PATH) == load_config(DEMO_PATH).security
    for text, said in [
        ('[security]\ncertficate = "x"\n', "security.certficate: Extra inputs are not permitted"),
        ('[security]\nserver_key = "k/server.key"\n', "security.server_key: used only with"),
        ('[security]\ncertificate = "x"\n[sync]\nmax_wait_ms = 1\n', "streams: Field required"),
    ]:
        alone.write_text(text)
        with pytest.raises(ConfigError, match=rf"^{alone}: invalid config:\n  .*{said}"):
            load_security(alone)


def test_a_config_of_continuous_streams_only_is_refused() -> None:
    """The synchronizer needs a discrete stream to build sets on: it crash-looped on such a config, which
    `run`, `replay`, `batch` and `config check` now refuse (each runs a synchronizer)."""
    text = """
[sync]
mode = "approximate"

[[streams]]
name = "audio/roof"
modality = "audio"
endpoint = "ipc://{run_dir}/audio.sock"
rate_hz = 50.0
sample_rate = 16000
"""
    config = parse_config(text, "audio.toml")  # a recorder's config may be so
    with pytest.raises(ConfigError, match="streams: no camera, lidar or radar stream: the synchronizer"):
        preflight(config, Path("audio.toml"))


@pytest.mark.parametrize(
    ("data", "refused"),
    [
        (DEMO.encode() + "# caméra avant\n".encode("latin-1"), r"not UTF-8 text \(byte 0xe9 on line \d+\)"),
        (DEMO.encode("utf-16"), "starts with a byte-order mark, which TOML does not take"),
        (b"\xef\xbb\xbf" + DEMO.encode(), "starts with a byte-order mark, which TOML does not take"),
    ],
    ids=["latin-1", "utf-16", "utf-8-bom"],
)
def test_a_config_that_is_not_plain_utf8_is_said_as_such(tmp_path: Path, data: bytes, refused: str) -> None:
    """A Latin-1 or UTF-16 file was a UnicodeDecodeError traceback; a BOM an "Invalid statement"."""
    path = tmp_path / "edited.toml"
    path.write_bytes(data)
    with pytest.raises(ConfigError, match=f"^{path}: {refused}"):
        load_config(path)
