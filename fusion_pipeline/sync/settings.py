"""The synchronizer's settings: per stream (StreamSync) and overall (SyncSettings), in nanoseconds,
and both from a loaded config's [sync] and [[streams]] sections.

``StreamSync.offset_ns`` is a known sensor latency, subtracted on arrival (event stamp = stamp_ns -
offset_ns), the same convention as the config's ``offset_ms``. The ingest nodes already subtract the
configured offset (time is corrected once, at ingest), so the sync stage passes ``offset_ns = 0``
(as :func:`settings_from_config` does); set it only when feeding raw driver stamps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from fusion_pipeline.config import Config, StreamConfig

__all__ = ["SampledSync", "StreamSync", "SyncSettings", "settings_from_config"]


@dataclass(frozen=True)
class SampledSync:
    """How a set takes a generic stream's samples (sync/sampled.py; config ``[streams.generic]``).

    mode: "nearest" = the sample nearest the set's stamp t within tolerance_ns; "window" = the last
    `samples` samples in (t - span_ns, t], stacked with a mask. `samples` is 1 in nearest mode.
    """

    mode: Literal["nearest", "window"] = "nearest"
    tolerance_ns: int = 0
    samples: int = 1
    span_ns: int = 0


@dataclass(frozen=True)
class StreamSync:
    """How one stream takes part in synchronization.

    kind: "discrete" streams (camera, lidar, radar) are matched message by message; "continuous"
    streams (audio) give each set the window of samples ending at the set's stamp; "sampled" streams
    (generic) give each set the sample nearest its stamp or the last samples up to it (`sampled`).
    offset_ns: known latency subtracted from every stamp on arrival (0 when ingest already did it).
    lower_bound_ns: the least gap between two messages of the stream, if known; lets a set be
    emitted before the stream's next message arrives. A stream must honour it.
    sample_rate: frames per second of a continuous stream.
    """

    name: str
    kind: Literal["discrete", "continuous", "sampled"] = "discrete"
    required: bool = False
    offset_ns: int = 0
    lower_bound_ns: int | None = None
    sample_rate: int | None = None
    sampled: SampledSync | None = None


@dataclass(frozen=True)
class SyncSettings:
    """Synchronizer settings (config section [sync], in nanoseconds).

    mode: "reference" = one set per message of `reference`, with the nearest unused message of every
    other stream; "approximate" = ROS ApproximateTime over the streams that are alive.
    max_interval_ns: approximate mode, the widest span of a set; reference mode, the farthest a
    match may lie from the reference stamp (at most max_wait_ns; None = max_wait_ns).
    max_wait_ns: once the watermark passes a set's stamp + max_wait_ns, what has not matched is
    missing; in approximate mode, a stream silent this long drops out until it sends again, so
    there it must exceed the slowest stream's period (plus jitter).
    audio_window_ns: length W of the window (t - W, t] of a continuous stream; W * sample_rate must
    be a whole number of frames.
    """

    mode: Literal["approximate", "reference"] = "reference"
    reference: str | None = None
    queue_size: int = 10
    max_interval_ns: int | None = None
    age_penalty: float = 0.0
    max_wait_ns: int = 60_000_000
    audio_window_ns: int = 500_000_000
    audio_gap_tolerance_ns: int = 5_000_000
    time_jump_ns: int = 1_000_000_000


def settings_from_config(config: Config) -> tuple[SyncSettings, list[StreamSync]]:
    """The synchronizer settings of a loaded config. Offsets are 0: ingest already applied them."""
    sync = config.sync

    def ns(ms: float | None) -> int | None:
        return None if ms is None else round(ms * 1_000_000)

    settings = SyncSettings(
        mode=sync.mode,
        reference=sync.reference,
        queue_size=sync.queue_size,
        max_interval_ns=ns(sync.max_interval_ms),
        age_penalty=sync.age_penalty,
        max_wait_ns=round(sync.max_wait_ms * 1_000_000),
        audio_window_ns=round(sync.audio_window_ms * 1_000_000),
        audio_gap_tolerance_ns=round(sync.audio_gap_tolerance_ms * 1_000_000),
        time_jump_ns=round(sync.time_jump_ms * 1_000_000),
    )
    streams = [
        StreamSync(
            name=s.name,
            kind="continuous"
            if s.modality == "audio"
            else "sampled"
            if s.modality == "generic"
            else "discrete",
            required=s.required,
            sample_rate=s.sample_rate,
            sampled=_sampled(s),
        )
        for s in config.streams
    ]
    return settings, streams


def _sampled(stream: StreamConfig) -> SampledSync | None:
    """A generic stream's [streams.generic] in ns; the defaults are one period (nearest) and
    window_samples periods (window)."""
    generic = stream.generic
    if generic is None:
        return None
    period_ms = 1000 / stream.rate_hz
    if generic.mode == "nearest":
        return SampledSync("nearest", tolerance_ns=round((generic.tolerance_ms or period_ms) * 1e6))
    samples = generic.window_samples or 1
    span_ms = generic.window_ms if generic.window_ms is not None else samples * period_ms
    return SampledSync("window", samples=samples, span_ns=round(span_ms * 1e6))
