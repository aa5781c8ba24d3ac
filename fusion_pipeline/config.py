"""TOML configuration into typed, validated objects.

Every error names the file, the key path (``streams[1].modality``) and what was expected, so a bad
config refuses to start with a message an operator can act on. Unknown keys are errors too: a typo
must not silently fall back to a default on a vehicle.

A config is a file, or ``package:NAME`` for one shipped in the package (`shipped_file`,
`read_config_text`); `absolute_config` names it for a process started elsewhere.

Endpoints may contain ``{run_dir}``, replaced by the run's private ipc directory. What depends on it (ipc
path lengths, two endpoints that become one) is checked again by `check_run_dir` once the run dir is known.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from fusion_pipeline.errors import ConfigError, EndpointError
from fusion_pipeline.protocol import (
    ALLOWED_DTYPES,
    CONTINUOUS_MODALITIES,
    NS_PER_S,
    STREAM_NAME_MAX,
    STREAM_NAME_PATTERN,
    Curve,
    Endpoint,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

__all__ = [
    "CONTINUOUS_MODALITIES",
    "DEMO_CONFIG",
    "IPC_PATH_MAX",
    "SHIPPED",
    "EndpointUse",
    "GenericConfig",
    "GraphKind",
    "check_run_dir",
    "config_source",
    "doubtful_settings",
    "Config",
    "LimitsConfig",
    "MetricsConfig",
    "ModelConfig",
    "OutputConfig",
    "PipelineConfig",
    "RecordConfig",
    "SecurityConfig",
    "StreamConfig",
    "SyncConfig",
    "ViewConfig",
    "invalid_config",
    "load_config",
    "load_security",
    "absolute_config",
    "parse_config",
    "read_config_text",
    "shipped",
    "shipped_file",
    "shipped_list",
    "validation_problems",
]

DEMO_CONFIG = "demo.toml"
#: The prefix of a config (`-c package:surround.toml`) or model (`package:surround.onnx`) shipped in the
#: package.
SHIPPED = "package:"
#: What runs a config: the live pipeline (`run`), a replay's process graph (`replay`: the separate nodes,
#: no recorder or viewer) or the offline graph in one process (`replay --offline`, `batch`).
GraphKind = Literal["live", "replay", "offline"]
#: The package folders that hold shipped files.
ShippedFolder = Literal["configs", "models"]
#: The run dir's ipc socket of the results when output.endpoint is tcp (Config.local_results_endpoint).
LOCAL_RESULTS_SOCKET = "results-local.sock"
#: Linux's sun_path holds 108 bytes with the closing NUL: libzmq refuses a longer ipc path.
IPC_PATH_MAX = 107
# Stands for the run dir until it is known: absolute, so it parses, and no real path starts with it.
_UNRESOLVED = "/{run_dir}"
_WILDCARD_HOSTS = {"*", "0.0.0.0", "::"}  # a bind on any of these takes the port on every address
_LOOPBACK_HOSTS = {"127.0.0.1", "::1"}  # localhost is spelled 127.0.0.1 by _bind_address

#: Bounds of numbers no real setting comes near: a duration in ms (an hour), a size in MB (64 GiB), a
#: count of messages or threads. Past them a value is a mistake (1e308), and would overflow where a node
#: turns it into an integer of its own or of libzmq's.
MAX_MS = 3_600_000.0
MAX_MB = 65_536.0
MAX_COUNT = 1_000_000
#: The longest part of a split recording: a week (a part a day is usual).
MAX_SPLIT_S = 7 * 86_400.0

Modality = Literal["camera", "lidar", "radar", "audio", "generic"]


class _Section(BaseModel):
    # strict: "20" is not a number, 1 is not a boolean. TOML has real types: a quoted number is a mistake.
    # TOML also spells inf and nan: no rate, wait, limit or offset means either.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class PipelineConfig(_Section):
    # A file name's part: the run file, the private run dir (fusion-NAME-*) and metrics labels use it.
    name: str = Field("fusion-pipeline", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    run_dir: str = Field("", description="directory of ipc sockets; empty = a fresh private temp dir")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # At most 2 s: the supervisor kills a node 5 s after its last beat (RestartPolicy).
    heartbeat_ms: int = Field(500, gt=0, le=2000)
    realtime_priority: int = Field(
        0,
        ge=0,
        le=99,
        description="SCHED_FIFO priority of the ingest, synchronizer and inference nodes; 0 = normal",
    )
    shm: bool = Field(
        False,
        description="live publishers on ipc endpoints pass arrays of 128 KiB and more through shared memory",
    )
    composition: Literal["processes", "composed"] = Field(
        "processes",
        description="processes: an ingest node per stream, the synchronizer and inference each in its own "
        "process; composed: all of them in one process and one loop (nodes/composed.py)",
    )


class LimitsConfig(_Section):
    """Receive limits of one stream, checked before anything is allocated (wire.Limits.from_config)."""

    max_arrays: int = Field(8, gt=0, le=256)
    max_ndim: int = Field(4, gt=0, le=8)
    max_array_mb: float = Field(64.0, gt=0, le=MAX_MB)
    max_total_mb: float = Field(128.0, gt=0, le=MAX_MB)
    dtypes: list[str] = Field(default_factory=lambda: sorted(ALLOWED_DTYPES), min_length=1)

    @model_validator(mode="after")
    def _array_within_total(self) -> LimitsConfig:
        if self.max_array_mb > self.max_total_mb:
            raise ValueError(f"max_array_mb ({self.max_array_mb}) is over max_total_mb ({self.max_total_mb})")
        return self

    @field_validator("dtypes")
    @classmethod
    def _known_dtypes(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - ALLOWED_DTYPES)
        if unknown:
            raise ValueError(f"unknown dtype strings {unknown}; allowed: {sorted(ALLOWED_DTYPES)}")
        return value


class GenericConfig(_Section):
    """A generic stream (``[streams.generic]``): one sample of a declared dtype and shape per message
    (an IMU's 6 values, a CAN frame's bytes), and how a set takes its samples (docs/OPERATIONS.md)."""

    dtype: str = Field(description="the sample's wire dtype string, e.g. '<f4' (PROTOCOL section 3)")
    shape: list[int] = Field(min_length=1, max_length=4, description="the sample's shape, e.g. [6]")
    mode: Literal["nearest", "window"] = Field(
        "nearest",
        description="nearest: the sample nearest the set's stamp; window: the last window_samples samples "
        "up to the stamp, stacked, with a mask",
    )
    tolerance_ms: float | None = Field(
        None,
        gt=0,
        le=MAX_MS,
        description="nearest: farthest a sample may lie from the stamp; default one period",
    )
    window_samples: int | None = Field(None, gt=0, le=65536, description="window: rows of the stacked array")
    window_ms: float | None = Field(
        None,
        gt=0,
        le=MAX_MS,
        description="window: only samples in (t - window_ms, t]; default window_samples periods",
    )

    @field_validator("dtype")
    @classmethod
    def _known_dtype(cls, value: str) -> str:
        if value not in ALLOWED_DTYPES:
            raise ValueError(f"unknown dtype string; allowed: {sorted(ALLOWED_DTYPES)}")
        return value

    @field_validator("shape")
    @classmethod
    def _positive_sizes(cls, value: list[int]) -> list[int]:
        if any(size < 1 for size in value):
            raise ValueError("every size must be at least 1")
        return value


class StreamConfig(_Section):
    name: str = Field(pattern=STREAM_NAME_PATTERN, max_length=STREAM_NAME_MAX)
    modality: Modality
    input: str = Field(
        "",
        description="the model input this stream feeds; empty = the input named like the stream (or its "
        "slug), else the model's only input of this modality",
    )
    endpoint: str = Field(description="where the sensor driver publishes; ingest subscribes here")
    ingest_endpoint: str = Field(
        "ipc://{run_dir}/ingest-{stream}.sock",
        description="where this stream's ingest node publishes model-ready samples; {stream} = slug",
    )
    frame_id: str = ""
    rate_hz: float = Field(
        gt=0, le=MAX_COUNT, description="nominal rate, for status and the simulated driver"
    )
    offset_ms: float = Field(
        0.0, ge=-MAX_MS, le=MAX_MS, description="known sensor latency, subtracted from stamps at ingest"
    )
    max_stamp_ahead_ms: float = Field(
        500.0,
        gt=0,
        le=MAX_MS,
        description="live: ingest drops a stamp (minus offset_ms) this far ahead of its clock",
    )
    required: bool = False
    sample_rate: int | None = Field(None, gt=0, le=10_000_000, description="audio only: samples per second")
    generic: GenericConfig | None = Field(None, description="generic only: the sample and its reference mode")
    driver: Literal["sim", "external"] = "sim"
    sim: dict[str, Any] = Field(default_factory=dict, description="simulated driver settings")
    limits: LimitsConfig = LimitsConfig()

    @property
    def offset_ns(self) -> int:
        return round(self.offset_ms * 1e6)

    @property
    def slug(self) -> str:
        return self.name.replace("/", "_")

    @property
    def input_name(self) -> str:
        """The input a model trained for this config gives the stream: `input`, else the slug."""
        return self.input or self.slug


class SyncConfig(_Section):
    mode: Literal["approximate", "reference"] = "reference"
    reference: str | None = None
    queue_size: int = Field(10, gt=0, le=MAX_COUNT)
    max_interval_ms: float | None = Field(None, gt=0, le=MAX_MS)
    age_penalty: float = Field(0.0, ge=0, le=MAX_COUNT)
    max_wait_ms: float = Field(60.0, ge=0, le=MAX_MS)
    audio_window_ms: float = Field(500.0, gt=0, le=MAX_MS)
    audio_gap_tolerance_ms: float = Field(5.0, ge=0, le=MAX_MS)
    time_jump_ms: float = Field(1000.0, gt=0, le=MAX_MS)
    endpoint: str = "ipc://{run_dir}/sets.sock"


class ModelConfig(_Section):
    path: str = Field(
        "",
        description="ONNX model file, or package:NAME for a shipped one; empty = the shipped default model",
    )
    providers: list[Literal["auto", "tensorrt", "cuda", "cpu"]] = ["auto"]
    tensorrt: bool = False
    tf32: bool = True
    unbound_inputs: list[str] = Field(
        default_factory=list, description="model inputs no stream feeds: always absent (presence bit 0)"
    )
    unbound_streams: list[str] = Field(
        default_factory=list,
        description="generic streams that feed no model input: checked, synchronized into the sets and "
        "recorded, never given to the model",
    )
    intra_op_threads: int = Field(0, ge=0, le=4096)
    slowdown: float = Field(
        1.0,
        ge=1.0,
        le=1e9,  # a model that never returns, as the tests of a hung node have it
        description="fault injection (tests, diagnostics): the inference node sleeps (slowdown - 1) x each "
        "model run's time, as if the model were this many times slower; 1 = off",
    )


class OutputConfig(_Section):
    endpoint: str = "ipc://{run_dir}/results.sock"
    hwm: int = Field(64, gt=0, le=MAX_COUNT)


class RecordConfig(_Section):
    enabled: bool = False
    path: str = "recording.mcap"
    streams: list[str] = Field(default_factory=list, description="empty = every stream")
    split_size_mb: float | None = Field(None, gt=0, le=MAX_MB)
    split_duration_s: float | None = Field(None, gt=0, le=MAX_SPLIT_S)


class ViewConfig(_Section):
    """The live viewer node (extra ``[view]``, docs/VIEW.md): `run` starts it when enabled. It watches the
    sensor streams and results without slowing them and shows them in Rerun (and Foxglove)."""

    enabled: bool = False
    save: str = Field("", description="an .rrd file to write; an existing one is kept (NAME-1.rrd, ...)")
    web: bool = Field(False, description="serve Rerun's web viewer on 127.0.0.1 (web_port, grpc_port)")
    web_port: int = Field(9090, ge=0, le=65535, description="the web viewer's HTTP port; 0 = any free")
    grpc_port: int = Field(
        0,
        ge=0,
        le=65535,
        description="the port its data comes from; 0 = any free (rerun answers any Host on it)",
    )
    foxglove: bool = Field(False, description="serve a Foxglove WebSocket with export-foxglove's channels")
    foxglove_port: int = Field(8765, ge=0, le=65535, description="its port on 127.0.0.1; 0 = any free")
    max_hz: float = Field(
        0.0,
        ge=0,
        le=MAX_COUNT,
        description="about the most frames per second shown of each camera, lidar and radar (a frame once "
        "3/4 of 1/max_hz has passed since the last one shown); 0 = all",
    )

    @model_validator(mode="after")
    def _shows_somewhere(self) -> ViewConfig:
        if self.enabled and not (self.save or self.web or self.foxglove):
            raise ValueError("enabled = true needs somewhere to show: save, web or foxglove")
        return self


class MetricsConfig(_Section):
    """The supervisor's Prometheus endpoint (docs/OPERATIONS.md lists the metrics)."""

    enabled: bool = True
    address: str = Field("127.0.0.1:9464", description="HOST:PORT to serve /metrics on; port 0 = any free")

    @field_validator("address")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host.strip("[]") or not (port.isascii() and port.isdigit()) or int(port) > 65535:
            raise ValueError("expected HOST:PORT, e.g. '127.0.0.1:9464' or '[::1]:9464' (port 0-65535)")
        return value

    @property
    def host(self) -> str:
        return self.address.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.address.rpartition(":")[2])


class SecurityConfig(_Section):
    """CURVE on tcp endpoints. Sockets this host binds are servers that admit only `authorized_keys`;
    sockets it connects present `certificate` and expect the server to hold `server_key`."""

    insecure: bool = Field(False, description="allow tcp endpoints without CURVE (trusted networks only)")
    certificate: str = Field("", description="this host's secret certificate (NAME.key_secret)")
    authorized_keys: str = Field("", description="directory of client public certificates allowed in")
    server_key: str = Field("", description="servers' public certificate; empty = this host's own key")

    def curve(self) -> Curve | None:
        """Transport settings, or None when CURVE is not configured."""
        if not self.certificate:
            return None
        certificate = Path(self.certificate)
        return Curve(
            certificate=certificate,
            authorized_keys=Path(self.authorized_keys) if self.authorized_keys else None,
            server_key=Path(self.server_key) if self.server_key else certificate.with_suffix(".key"),
        )


class EndpointUse(NamedTuple):
    """One endpoint of the graph, `{run_dir}` and `{stream}` resolved."""

    key: str  # its config key, e.g. "streams[1].endpoint"
    url: str
    binds: bool  # bound on this host; False: an external driver's, which this host connects to


class Config(_Section):
    pipeline: PipelineConfig = PipelineConfig()
    streams: list[StreamConfig] = Field(min_length=1)
    sync: SyncConfig = SyncConfig()
    model: ModelConfig = ModelConfig()
    output: OutputConfig = OutputConfig()
    record: RecordConfig = RecordConfig()
    view: ViewConfig = ViewConfig()
    security: SecurityConfig = SecurityConfig()
    metrics: MetricsConfig = MetricsConfig()

    def stream(self, name: str) -> StreamConfig:
        for stream in self.streams:
            if stream.name == name:
                return stream
        raise ConfigError(f"no stream {name!r} in the config (streams: {[s.name for s in self.streams]})")

    def endpoint(self, template: str, run_dir: str | Path) -> str:
        """Resolve ``{run_dir}`` in an endpoint template."""
        return template.replace("{run_dir}", str(run_dir))

    def ingest_endpoint(self, stream: str, run_dir: str | Path) -> str:
        """Where the ingest node of `stream` publishes."""
        config = self.stream(stream)
        return self.endpoint(config.ingest_endpoint.replace("{stream}", config.slug), run_dir)

    def local_results_endpoint(self, run_dir: str | Path) -> str:
        """Where this host's own readers of the results (the supervisor, the replayer) subscribe: the
        output endpoint when it is ipc; for a tcp one, an ipc endpoint in the run dir that the results
        publisher binds besides. A CURVE client presents the one `server_key` of the config's peer (the
        vehicle), which is not the key this host serves its results with."""
        output = self.endpoint(self.output.endpoint, run_dir)
        # Not Endpoint(output).scheme: a malformed endpoint is refused by the config's checks, by its key.
        return f"ipc://{run_dir}/{LOCAL_RESULTS_SOCKET}" if output.startswith("tcp://") else output

    def live_only(self, graph: GraphKind) -> list[str]:
        """The settings this config turns on that the `graph` does not honour, as "key = value": a
        replay's process graph runs the separate nodes, no recorder (it would copy the log it reads;
        `--results` records the results) and no viewer; the offline graph (`--offline`, `batch`) also
        has no sockets, scheduler or fault injection of its own. A live graph honours them all."""
        pipeline, priority = self.pipeline, self.pipeline.realtime_priority
        live_only = [
            (pipeline.composition == "composed", 'pipeline.composition = "composed"'),
            (self.record.enabled, "record.enabled = true"),
            (self.view.enabled, "view.enabled = true"),
        ]
        if graph == "offline":
            live_only += [
                (pipeline.shm, "pipeline.shm = true"),
                (priority > 0, f"pipeline.realtime_priority = {priority}"),
                (self.model.slowdown != 1.0, f"model.slowdown = {self.model.slowdown:g}"),
            ]
        return [text for on, text in live_only if on and graph != "live"]

    def endpoint_uses(self, run_dir: str | Path, graph: GraphKind | None = None) -> list[EndpointUse]:
        """Every endpoint of the graph in `run_dir`: drivers', ingest's, the synchronizer's, the results';
        of a `graph` (None: any), those it uses: a live composed node binds no ingest endpoint (its
        stages hand the frames over in-process; a replay runs the separate nodes)."""
        uses = [
            EndpointUse(f"streams[{i}].endpoint", self.endpoint(s.endpoint, run_dir), s.driver == "sim")
            for i, s in enumerate(self.streams)
        ]
        if not (graph == "live" and self.pipeline.composition == "composed"):
            uses += [
                EndpointUse(f"streams[{i}].ingest_endpoint", self.ingest_endpoint(s.name, run_dir), True)
                for i, s in enumerate(self.streams)
            ]
        output = self.endpoint(self.output.endpoint, run_dir)
        if (local := self.local_results_endpoint(run_dir)) != output:
            uses.append(EndpointUse("output.endpoint (its ipc beside the tcp one)", local, True))
        return [
            *uses,
            EndpointUse("sync.endpoint", self.endpoint(self.sync.endpoint, run_dir), True),
            EndpointUse("output.endpoint", output, True),
        ]

    def curve_for(self, urls: str | Iterable[str]) -> Curve | None:
        """CURVE settings for a socket attached to `urls` (resolved endpoints), or None when none is tcp
        or no certificate is configured (ipc, or tcp with ``security.insecure``). The transport applies
        them to the tcp endpoints only; whether this socket is server or client follows from bind/connect."""
        urls = [urls] if isinstance(urls, str) else list(urls)
        if not any(Endpoint(url).scheme == "tcp" for url in urls):
            return None
        return self.security.curve()


def config_source(path: str | Path | None) -> str:
    """How messages name a config: its file, or the embedded demo for None."""
    return f"<embedded {DEMO_CONFIG}>" if path is None else str(path)


def shipped(folder: ShippedFolder) -> list[str]:
    """The files the package ships in `folder`, by name (``package:NAME`` names one)."""
    suffix = {"configs": ".toml", "models": ".onnx"}[folder]
    files = resources.files("fusion_pipeline").joinpath(folder).iterdir()
    return sorted(f.name for f in files if f.name.endswith(suffix))


def shipped_list(folder: ShippedFolder) -> str:
    """The shipped files of `folder` as a user names them, for messages."""
    return ", ".join(SHIPPED + name for name in shipped(folder))


def shipped_file(ref: str, folder: ShippedFolder, error: type[Exception]) -> Traversable:
    """The shipped file ``package:NAME`` names in `folder`; `error` naming the shipped ones if none."""
    name = ref.removeprefix(SHIPPED)
    if name not in shipped(folder):
        kind = folder.removesuffix("s")
        raise error(f"{ref}: no {kind} of that name ships with the package (shipped: {shipped_list(folder)})")
    return resources.files("fusion_pipeline").joinpath(folder, name)


def read_config_text(path: str | Path) -> str:
    """The text of a config file, or of a shipped one for ``package:NAME``; ConfigError naming it."""
    if str(path).startswith(SHIPPED):
        return shipped_file(str(path), "configs", ConfigError).read_text()
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror}") from exc
    if data.startswith((b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")):
        raise ConfigError(
            f"{path}: starts with a byte-order mark, which TOML does not take: save it as UTF-8 without one"
        )
    try:
        return data.decode("utf-8")  # what TOML files are, whatever the locale
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            f"{path}: not UTF-8 text (byte 0x{data[exc.start]:02x} on line {line}): TOML files are UTF-8; "
            "save it as such"
        ) from None


def absolute_config(path: Path) -> Path:
    """How a process started in another directory names the config: a file by its absolute path, a
    shipped one (``package:NAME``) as it is."""
    return path if str(path).startswith(SHIPPED) else path.resolve()


def load_config(path: str | Path | None = None) -> Config:
    """Read a config file, or ``package:NAME`` for one shipped in the package; None reads the embedded
    demo config."""
    if path is None:
        text = resources.files("fusion_pipeline").joinpath("configs", DEMO_CONFIG).read_text()
        return parse_config(text, config_source(path))
    return parse_config(read_config_text(path), config_source(path))


def parse_config(text: str, source: str = "<string>") -> Config:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from exc
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        raise invalid_config(source, validation_problems(exc)) from exc
    problems = list(_cross_checks(config))
    if problems:
        raise invalid_config(source, problems)
    return config


def invalid_config(source: str, problems: list[str]) -> ConfigError:
    """The error of a config with `problems` ('key.path: what is wrong'), one per line under its source."""
    return ConfigError(f"{source}: invalid config:\n" + "\n".join(f"  {p}" for p in problems))


def load_security(path: str | Path) -> SecurityConfig:
    """The [security] section of a config file, for a command that only connects (echo, hz, topics): a
    whole pipeline config, checked whole as `run` checks it, or a file of that section alone (a
    consumer's or a driver's host, which runs no pipeline)."""
    source = config_source(path)
    text = read_config_text(path)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from exc
    if set(raw) != {"security"}:
        return parse_config(text, source).security
    try:
        security = SecurityConfig.model_validate(raw["security"])
    except ValidationError as exc:
        problems = [f"security.{p}" for p in validation_problems(exc)]
    else:
        if not (problems := list(_security_problems(security))):
            return security
    raise invalid_config(source, problems)


def _security_problems(security: SecurityConfig) -> Iterator[str]:
    if security.authorized_keys == "*":
        yield (
            "security.authorized_keys: '*' would admit any client key; name a directory holding the "
            "clients' public certificates (NAME.key)"
        )
    for key in ("authorized_keys", "server_key"):
        if getattr(security, key) and not security.certificate:
            yield f"security.{key}: used only with security.certificate (CURVE on tcp endpoints)"
    if security.insecure and security.certificate:
        yield (
            "security.insecure: true does nothing beside security.certificate, which secures every tcp "
            "endpoint with CURVE: remove one of the two"
        )


def validation_problems(exc: ValidationError) -> list[str]:
    """Each of pydantic's errors as "key.path[1]: what is wrong (got VALUE)", for config keys and
    manifest fields alike."""
    problems = []
    for error in exc.errors():
        path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error["loc"]).lstrip(".")
        got = "" if error["type"] == "missing" else f" (got {error['input']!r})"
        problems.append(f"{path or '<top>'}: {error['msg']}{got}")
    return problems


def _cross_checks(config: Config) -> Iterator[str]:
    """Checks that span keys; each yields 'key.path: what is wrong'."""
    names = [s.name for s in config.streams]
    slugs = [s.slug for s in config.streams]
    clash = False  # two names, one slug: their default endpoints collide too, which would only repeat it
    for i, stream in enumerate(config.streams):
        if names.index(stream.name) != i:
            clash = True
            yield f"streams[{i}].name: duplicate stream name {stream.name!r}"
        elif (j := slugs.index(stream.slug)) != i:
            clash = True
            yield (
                f"streams[{i}].name: {stream.name!r} and streams[{j}].name {names[j]!r} make one name, "
                f"{stream.slug!r}, where a name holds no '/' (the default ingest endpoint, the model input "
                "a trained model gives the stream): rename one"
            )
        if stream.name.startswith("replay/"):  # the end of a replay and the skip marker (PROTOCOL section 5)
            yield f"streams[{i}].name: {stream.name!r}: names under replay/ are the replay's own messages"
        if stream.modality == "audio" and stream.sample_rate is None:
            yield f"streams[{i}].sample_rate: required for an audio stream"
        if stream.modality != "audio" and stream.sample_rate is not None:
            yield f"streams[{i}].sample_rate: only audio streams have a sample rate"
        yield from _generic_problems(i, stream)
    security = config.security
    yield from _security_problems(security)
    valid = True
    uses = config.endpoint_uses(_UNRESOLVED)
    for key, url, _ in uses:
        try:
            endpoint = Endpoint(url)
        except EndpointError as exc:
            valid = False
            yield f"{key}: {_shown(str(exc))}"  # the value as written
            continue
        if (
            endpoint.scheme == "tcp"
            and not security.insecure
            and not (security.certificate and security.authorized_keys)
        ):
            yield (
                f"{key}: tcp endpoint {url!r} needs CURVE: set security.certificate and "
                "security.authorized_keys (see `fusion-pipeline keys generate`), or security.insecure = true"
            )
    if valid and not clash:  # what the run dir does not change can be refused now
        yield from _endpoint_problems(config, _UNRESOLVED)
    if config.sync.reference is not None and config.sync.reference not in names:  # in either mode
        yield f"sync.reference: {config.sync.reference!r} is not a stream (streams: {names})"
    elif config.sync.mode == "reference":
        if config.sync.reference is None:
            yield "sync.reference: required when sync.mode = 'reference' (name of the reference stream)"
        elif config.stream(config.sync.reference).modality == "audio":
            yield "sync.reference: an audio stream is continuous and cannot be the reference"
        elif config.stream(config.sync.reference).modality == "generic":
            yield (
                "sync.reference: a generic stream is sampled into other streams' sets and cannot be the "
                "reference"
            )
    window_ns = round(config.sync.audio_window_ms * 1_000_000)  # as the synchronizer takes it
    for i, stream in enumerate(config.streams):
        if (
            stream.modality == "audio"
            and stream.sample_rate
            and window_ns * stream.sample_rate % NS_PER_S  # the synchronizer's own check
        ):
            yield (
                f"sync.audio_window_ms: {config.sync.audio_window_ms:g} ms is not a whole number of samples "
                f"at streams[{i}].sample_rate {stream.sample_rate} Hz (the window is cut in whole samples)"
            )
    for j, name in enumerate(config.model.unbound_streams):
        if name not in names:
            yield f"model.unbound_streams[{j}]: {name!r} is not a stream (streams: {names})"
        elif config.stream(name).modality != "generic":
            yield (
                f"model.unbound_streams[{j}]: {name!r} is a {config.stream(name).modality} stream; only a "
                "generic stream runs without a model input (the others' ingest prepares one)"
            )
        elif config.stream(name).input:
            yield f"model.unbound_streams[{j}]: {name!r} names a model input (streams[].input)"
    for j, name in enumerate(config.record.streams):
        if name not in names:
            yield f"record.streams[{j}]: {name!r} is not a stream (streams: {names})"
    model = config.model
    if config.sync.mode == "reference" and "age_penalty" in config.sync.model_fields_set:
        yield "sync.age_penalty: weighs candidate sets in sync.mode = 'approximate' only"
    if model.tensorrt and "auto" not in model.providers:
        yield (
            f"model.tensorrt: opts TensorRT into providers = ['auto'] only; with {model.providers} "
            "name 'tensorrt' in model.providers instead"
        )
    if config.pipeline.shm and not any(u.url.startswith("ipc://") for u in uses):
        yield "pipeline.shm: no endpoint is ipc, and shared memory serves ipc endpoints only"
    for key, values in (
        ("model.providers", model.providers),
        ("model.unbound_inputs", model.unbound_inputs),
        ("model.unbound_streams", model.unbound_streams),
        ("record.streams", config.record.streams),
    ):
        for j, value in enumerate(values):
            if value in values[:j]:
                yield f"{key}[{j}]: {value!r} is given twice"


def _generic_problems(i: int, stream: StreamConfig) -> Iterator[str]:
    """A generic stream declares its sample and a consistent reference mode; no other stream does."""
    generic = stream.generic
    if stream.modality != "generic":
        if generic is not None:
            yield f"streams[{i}].generic: only generic streams have this table"
        return
    if generic is None:
        yield f"streams[{i}].generic: required for a generic stream (dtype, shape, mode)"
        return
    if generic.mode == "window" and generic.window_samples is None:
        yield f"streams[{i}].generic.window_samples: required when mode = 'window'"
    wrong_mode = {"nearest": ("window_samples", "window_ms"), "window": ("tolerance_ms",)}[generic.mode]
    for key in wrong_mode:
        if getattr(generic, key) is not None:
            yield f"streams[{i}].generic.{key}: not used when mode = {generic.mode!r}"


def doubtful_settings(config: Config) -> Iterator[str]:
    """Settings that are valid but most likely not what was meant, for a warning at start: a generic
    stream's window that its rate can never fill, or a nearest tolerance under half its period (a set
    stamp between two samples then finds neither), a reference-mode max_wait_ms longer than queue_size
    reference periods (sets then wait for a silent optional stream less than it says), the reference
    stream said not required (every set is built on it), CURVE keys where no endpoint is tcp, or an
    ingest endpoint a live composed node does not bind."""
    security = config.security
    keys = [key for key in ("certificate", "authorized_keys", "server_key") if getattr(security, key)]
    if keys and not any(use.url.startswith("tcp://") for use in config.endpoint_uses(_UNRESOLVED)):
        yield (
            f"security.{keys[0]}: no endpoint of this config is tcp, and CURVE secures tcp endpoints "
            "only: [security]'s keys are not used by this graph (only by a tool given a tcp endpoint)"
        )
    if config.pipeline.composition == "composed":
        for i, stream in enumerate(config.streams):
            if "ingest_endpoint" in stream.model_fields_set:
                yield (
                    f"streams[{i}].ingest_endpoint: not bound live with pipeline.composition = "
                    '"composed" (its stages hand the frames over in-process); a replay\'s separate nodes '
                    "use it"
                )
    sync = config.sync
    if sync.mode == "reference" and sync.reference in {s.name for s in config.streams}:
        reference = config.stream(sync.reference)
        if not reference.required and "required" in reference.model_fields_set:
            yield (
                f"streams[{config.streams.index(reference)}].required: false does nothing on the "
                "reference stream: every set is built on one of its messages"
            )
        period_ms = 1000 / reference.rate_hz
        if sync.max_wait_ms / period_ms + 1 > sync.queue_size:
            yield (
                f"sync.max_wait_ms: {sync.max_wait_ms:g} ms holds more than sync.queue_size "
                f"({sync.queue_size}) sets of the reference at {period_ms:g} ms each: with an optional "
                "stream silent, a set is decided once queue_size newer ones wait, before max_wait_ms"
            )
    for i, stream in enumerate(config.streams):
        generic, period_ms = stream.generic, 1000 / stream.rate_hz
        if generic is None:
            continue
        where = f"streams[{i}].generic"
        if generic.mode == "window" and generic.window_ms is not None and generic.window_samples:
            # Samples in (t - window_ms, t], at most (a window open at its old end; float periods rounded).
            held = math.ceil(generic.window_ms / period_ms - 1e-9)
            if held < generic.window_samples:
                yield (
                    f"{where}.window_ms: {generic.window_ms:g} ms holds at most {held} of the "
                    f"{generic.window_samples} window_samples at rate_hz {stream.rate_hz:g}: every set's "
                    "window is mostly empty"
                )
        tolerance = generic.tolerance_ms if generic.mode == "nearest" else None
        if tolerance is not None and tolerance < period_ms / 2:
            yield (
                f"{where}.tolerance_ms: {tolerance:g} ms is under half the period ({period_ms / 2:g} ms at "
                f"rate_hz {stream.rate_hz:g}): sets whose stamp falls between two samples get none"
            )


def check_run_dir(
    config: Config, run_dir: Path, source: str, sockets: Sequence[tuple[str, str]] = ()
) -> None:
    """Refuse, before anything is created or bound, what `run_dir` makes of the endpoints: an ipc path
    over IPC_PATH_MAX, or two endpoints that become one (an absolute path inside the run dir). `sockets`
    are the run's own, as (what, resolved url) pairs: the supervisor's control socket, for one."""
    problems = _endpoint_problems(config, str(run_dir), sockets)
    if problems:
        lines = "\n".join(f"  {p}" for p in problems)
        raise ConfigError(f"{source}: invalid config for run dir {run_dir}:\n{lines}")


def _endpoint_problems(config: Config, run_dir: str, sockets: Sequence[tuple[str, str]] = ()) -> list[str]:
    uses = [*config.endpoint_uses(run_dir), *(EndpointUse(what, url, True) for what, url in sockets)]
    if config.metrics.enabled:  # the supervisor's HTTP server takes a tcp port of this host too
        uses.append(EndpointUse("metrics.address", f"tcp://{config.metrics.address}", True))
    view = config.view
    if view.enabled:  # and the viewer node's servers, on the loopback address
        served = [("web_port", view.web_port), ("grpc_port", view.grpc_port)] if view.web else []
        served += [("foxglove_port", view.foxglove_port)] if view.foxglove else []
        uses += [EndpointUse(f"view.{key}", f"tcp://127.0.0.1:{port}", True) for key, port in served]
    return [*_too_long(uses), *_collisions(uses)]


def _shown(url: str) -> str:
    return url.replace(_UNRESOLVED, "{run_dir}")


def _too_long(uses: Sequence[EndpointUse]) -> Iterator[str]:
    found = False
    for use in uses:
        if not use.url.startswith("ipc://") or _UNRESOLVED in use.url:
            continue
        path = use.url[len("ipc://") :]
        size = len(os.fsencode(path))
        if size > IPC_PATH_MAX:
            found = True
            yield (
                f"{use.key}: ipc path {path!r} is {size} bytes, over the {IPC_PATH_MAX}-byte limit of a "
                "socket address (sun_path)"
            )
    if found:
        yield "(shorten these endpoints or pipeline.run_dir, or TMPDIR where the run dir is a temp dir)"


def _collisions(uses: Sequence[EndpointUse]) -> Iterator[str]:
    for i, use in enumerate(uses):
        for other in uses[:i]:
            reason = _collision(use, other)
            if reason is not None:
                yield (
                    f"{use.key}: {_shown(use.url)!r} collides with {other.key} ({_shown(other.url)!r}): "
                    f"{reason}; give each endpoint its own"
                )
                break


def _collision(a: EndpointUse, b: EndpointUse) -> str | None:
    """Why `a` and `b` would take one socket, or None. Two binds on this host collide on one ipc path, or
    one tcp port on the same or a wildcard host. An external driver's endpoint collides only with one this
    host binds, on the same address (or loopback under a wildcard): several streams may share one driver's
    socket, and whether another host's address is this host's cannot be told from the config."""
    where_a, where_b = _bind_address(a.url), _bind_address(b.url)
    if not (a.binds or b.binds) or where_a is None or where_b is None:
        return None
    if where_a == where_b:
        return "the same ipc path" if where_a[0] == "ipc" else "the same tcp address"
    (scheme_a, host_a, port_a), (scheme_b, host_b, port_b) = where_a, where_b
    if scheme_a != "tcp" or scheme_b != "tcp" or port_a != port_b or "*" not in (host_a, host_b):
        return None
    other = host_b if host_a == "*" else host_a
    if a.binds and b.binds or other in _LOOPBACK_HOSTS:
        return f"a wildcard host takes tcp port {port_a} on every address"
    return None


def _bind_address(url: str) -> tuple[str, str, int | str] | None:
    """What binding `url` takes: ("ipc", path, "") or ("tcp", host, port) with the spellings libzmq
    makes one made one: leading slashes, wildcard and localhost hosts, leading zeros of a port. None for
    a port the system picks (tcp "*", or 0)."""
    scheme, _, rest = url.partition("://")
    if scheme == "ipc":
        # normpath keeps a leading "//" (POSIX lets it mean something else); the kernel does not.
        return "ipc", os.path.normpath("/" + rest.lstrip("/")), ""
    host, _, written = rest.rpartition(":")
    # A port is a number to libzmq ("05755" is 5755). One that is not a plain number is refused by
    # Endpoint or libzmq; compared as written here, so this check never raises on it.
    port: int | str = int(written) if written.isascii() and written.isdigit() else written
    if port in ("*", 0):
        return None
    host = host.strip("[]").lower()
    return "tcp", "*" if host in _WILDCARD_HOSTS else "127.0.0.1" if host == "localhost" else host, port
