"""TOML configuration into typed, validated objects.

Every error names the file, the key path (``streams[1].modality``) and what was expected, so a bad
config refuses to start with a message an operator can act on. Unknown keys are errors too: a typo
must not silently fall back to a default on a vehicle.

Endpoints may contain ``{run_dir}``, replaced by the run's private ipc directory.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from fusion_pipeline.errors import FusionError
from fusion_pipeline.transport import Curve, Endpoint, EndpointError
from fusion_pipeline.wire import ALLOWED_DTYPES, Limits

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = [
    "DEMO_CONFIG",
    "config_source",
    "Config",
    "ConfigError",
    "LimitsConfig",
    "MetricsConfig",
    "ModelConfig",
    "OutputConfig",
    "PipelineConfig",
    "RecordConfig",
    "SecurityConfig",
    "StreamConfig",
    "SyncConfig",
    "load_config",
    "parse_config",
]

DEMO_CONFIG = "demo.toml"

Modality = Literal["camera", "lidar", "radar", "audio"]


class ConfigError(FusionError):
    pass


class _Section(BaseModel):
    # strict: "20" is not a number, 1 is not a boolean. TOML has real types: a quoted number is a mistake.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class PipelineConfig(_Section):
    name: str = "fusion-pipeline"
    run_dir: str = Field("", description="directory of ipc sockets; empty = a fresh private temp dir")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # At most 2 s: the supervisor declares a node hung after 5 s without a beat (RestartPolicy).
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


class LimitsConfig(_Section):
    """Receive limits of one stream, checked before anything is allocated (see wire.Limits)."""

    max_arrays: int = Field(8, gt=0, le=256)
    max_ndim: int = Field(4, gt=0, le=8)
    max_array_mb: float = Field(64.0, gt=0)
    max_total_mb: float = Field(128.0, gt=0)
    dtypes: list[str] = Field(default_factory=lambda: sorted(ALLOWED_DTYPES))

    @field_validator("dtypes")
    @classmethod
    def _known_dtypes(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - ALLOWED_DTYPES)
        if unknown:
            raise ValueError(f"unknown dtype strings {unknown}; allowed: {sorted(ALLOWED_DTYPES)}")
        return value

    def to_limits(self) -> Limits:
        mib = 1024 * 1024
        return Limits(
            max_arrays=self.max_arrays,
            max_ndim=self.max_ndim,
            max_array_bytes=int(self.max_array_mb * mib),
            max_total_bytes=int(self.max_total_mb * mib),
            allowed_dtypes=frozenset(self.dtypes),
        )


class StreamConfig(_Section):
    name: str = Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_./-]*$", max_length=128)
    modality: Modality
    endpoint: str = Field(description="where the sensor driver publishes; ingest subscribes here")
    ingest_endpoint: str = Field(
        "ipc://{run_dir}/ingest-{stream}.sock",
        description="where this stream's ingest node publishes model-ready samples; {stream} = slug",
    )
    frame_id: str = ""
    rate_hz: float = Field(gt=0, description="nominal rate, for status and the simulated driver")
    offset_ms: float = Field(0.0, description="known sensor latency, subtracted from stamps at ingest")
    required: bool = False
    sample_rate: int | None = Field(None, gt=0, description="audio only: samples per second")
    driver: Literal["sim", "external"] = "sim"
    sim: dict[str, Any] = Field(default_factory=dict, description="simulated driver settings")
    limits: LimitsConfig = LimitsConfig()

    @property
    def offset_ns(self) -> int:
        return round(self.offset_ms * 1e6)

    @property
    def slug(self) -> str:
        return self.name.replace("/", "_")


class SyncConfig(_Section):
    mode: Literal["approximate", "reference"] = "reference"
    reference: str | None = None
    queue_size: int = Field(10, gt=0)
    max_interval_ms: float | None = Field(None, gt=0)
    age_penalty: float = Field(0.0, ge=0)
    max_wait_ms: float = Field(60.0, ge=0)
    audio_window_ms: float = Field(500.0, gt=0)
    audio_gap_tolerance_ms: float = Field(5.0, ge=0)
    time_jump_ms: float = Field(1000.0, gt=0)
    endpoint: str = "ipc://{run_dir}/sets.sock"


class ModelConfig(_Section):
    path: str = Field("", description="ONNX model; empty = the shipped default model")
    providers: list[Literal["auto", "tensorrt", "cuda", "cpu"]] = ["auto"]
    tensorrt: bool = False
    tf32: bool = True
    intra_op_threads: int = Field(0, ge=0)
    slowdown: float = Field(
        1.0,
        ge=1.0,
        description="fault injection (tests, diagnostics): the inference node sleeps (slowdown - 1) x each "
        "model run's time, as if the model were this many times slower; 1 = off",
    )


class OutputConfig(_Section):
    endpoint: str = "ipc://{run_dir}/results.sock"
    hwm: int = Field(64, gt=0)


class RecordConfig(_Section):
    enabled: bool = False
    path: str = "recording.mcap"
    streams: list[str] = Field(default_factory=list, description="empty = every stream")
    split_size_mb: float | None = Field(None, gt=0)
    split_duration_s: float | None = Field(None, gt=0)


class MetricsConfig(_Section):
    """The supervisor's Prometheus endpoint (docs/OPERATIONS.md lists the metrics)."""

    enabled: bool = True
    address: str = Field("127.0.0.1:9464", description="HOST:PORT to serve /metrics on; port 0 = any free")

    @field_validator("address")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host.strip("[]") or not port.isdigit() or int(port) > 65535:
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


class Config(_Section):
    pipeline: PipelineConfig = PipelineConfig()
    streams: list[StreamConfig] = Field(min_length=1)
    sync: SyncConfig = SyncConfig()
    model: ModelConfig = ModelConfig()
    output: OutputConfig = OutputConfig()
    record: RecordConfig = RecordConfig()
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


def load_config(path: str | Path | None = None) -> Config:
    """Read a config file; None reads the embedded demo config."""
    if path is None:
        text = resources.files("fusion_pipeline").joinpath("configs", DEMO_CONFIG).read_text()
        return parse_config(text, config_source(path))
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror}") from exc
    return parse_config(text, config_source(path))


def parse_config(text: str, source: str = "<string>") -> Config:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from exc
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{source}: invalid config:\n" + _describe(exc)) from exc
    problems = list(_cross_checks(config))
    if problems:
        raise ConfigError(f"{source}: invalid config:\n" + "\n".join(f"  {p}" for p in problems))
    return config


def _describe(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error["loc"]).lstrip(".")
        got = "" if error["type"] == "missing" else f" (got {error['input']!r})"
        lines.append(f"  {path or '<top>'}: {error['msg']}{got}")
    return "\n".join(lines)


def _cross_checks(config: Config) -> Iterator[str]:
    """Checks that span keys; each yields 'key.path: what is wrong'."""
    names = [s.name for s in config.streams]
    for i, stream in enumerate(config.streams):
        if names.index(stream.name) != i:
            yield f"streams[{i}].name: duplicate stream name {stream.name!r}"
        if stream.modality == "audio" and stream.sample_rate is None:
            yield f"streams[{i}].sample_rate: required for an audio stream"
        if stream.modality != "audio" and stream.sample_rate is not None:
            yield f"streams[{i}].sample_rate: only audio streams have a sample rate"
    endpoints = [(f"streams[{i}].endpoint", s.endpoint) for i, s in enumerate(config.streams)]
    endpoints += [(f"streams[{i}].ingest_endpoint", s.ingest_endpoint) for i, s in enumerate(config.streams)]
    endpoints += [("sync.endpoint", config.sync.endpoint), ("output.endpoint", config.output.endpoint)]
    security = config.security
    for key, url in endpoints:
        try:
            endpoint = Endpoint(url.replace("{run_dir}", "/run").replace("{stream}", "s"))
        except EndpointError as exc:
            yield f"{key}: {exc}"
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
    if config.sync.mode == "reference":
        if config.sync.reference is None:
            yield "sync.reference: required when sync.mode = 'reference' (name of the reference stream)"
        elif config.sync.reference not in names:
            yield f"sync.reference: {config.sync.reference!r} is not a stream (streams: {names})"
        elif config.stream(config.sync.reference).modality == "audio":
            yield "sync.reference: an audio stream is continuous and cannot be the reference"
    for j, name in enumerate(config.record.streams):
        if name not in names:
            yield f"record.streams[{j}]: {name!r} is not a stream (streams: {names})"
