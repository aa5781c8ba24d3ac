"""Simulated sensor drivers: when each capture happens, when it is sent, and what it contains. No clock.

nodes/sensor_sim.py runs one `SensorSchedule` per simulated stream and publishes what `render` returns,
exactly as an external driver following docs/PROTOCOL.md would. All simulated sensors render the same
`World` (seed ``streams[].sim.seed``, start at the UNIX epoch), so separate processes agree on every actor
without talking to each other, and the scene changes every ``WorldConfig.episode_s`` (4 s).

Captures sit on a grid of the stream's period counted from the epoch (SensorSchedule), so a restarted
driver continues the same grid, sensors whose rates divide each other capture at the same instants,
and consecutive audio chunks (1 / rate_hz s each, stamped with their first sample) join
exactly. A simulated generic stream is an IMU (World.imu: ax, ay, az, gx, gy, gz as float32, one
sample per message; its [streams.generic] must say dtype "<f4", shape [6]), at any rate_hz (the IMU
example, configs/imu.toml, runs it at 1 kHz). Settings, all optional, in ``[streams.sim]``:

- ``seed`` (int, default 0): world seed; give every simulated stream the same one.
- ``latency_ms`` (>= 0): sending happens this long after capture, so the stamp is earlier than the send.
- ``jitter_ms`` (>= 0): the send delay varies uniformly by +- jitter_ms around latency_ms (never < 0).
- ``phase_ms`` (0 .. one period): capture this long after the common grid (unsynchronized sensors).
- ``drop_prob`` (0..1): a capture is lost in transport with this probability; its seq is skipped, so
  the receiver sees a gap.
- ``outage = {start_s, duration_s}``: the sensor sends nothing for duration_s (``inf``: for good),
  start_s after the driver's schedule began (once its world is built, a camera's rendering warmed up:
  seconds after the run started, more on a busy machine); seq keeps counting, as a sensor that lost its
  link would.
- ``rate_factor`` (> 0, default 1): fault injection -- the driver captures at rate_hz x rate_factor
  while the rest of the pipeline still expects rate_hz (a sensor configured wrongly, or overload).
- ``corruption`` (a kind of sim/corruptions.py of the stream's modality, e.g. ``"camera_blur"``) and
  ``severity`` (1, 2 or 3, default 2): every capture is sent degraded, the sensor still present. The
  corruption's randomness is drawn per capture from (seed, stream name, stamp), so a run is reproducible;
  an audio corruption acts on each chunk alone (wind noise does not join across chunks).

Where the sensor sits (``world.Mount``; data comes in the sensor's own frame, as from a real one):

- ``yaw_deg`` (default 0): which way it looks, counter-clockwise from the ego's forward axis (90 = left).
- ``x_m``, ``y_m`` (default 0): its position in the ego frame (x forward, y left).
- ``fov_deg`` (camera only, 0 .. 180, default ~46.2): horizontal field of view; the focal length follows.

A stream with ``driver = "external"`` takes only these mount keys in ``[streams.sim]`` (where the viewer
draws it); the driver settings above are refused there, since no simulated driver runs for it.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, fields
from fractions import Fraction
from typing import Any

import numpy as np

from fusion_pipeline.config import StreamConfig
from fusion_pipeline.protocol import NS_PER_S
from fusion_pipeline.sim.corruptions import CORRUPTIONS, SEVERITIES, Corruption
from fusion_pipeline.sim.errors import SimError
from fusion_pipeline.sim.world import AUDIO_SAMPLE_RATE, DEFAULT_MOUNT, Mount, World, WorldError

__all__ = ["Capture", "RenderLead", "SensorSchedule", "SimSettings", "render"]


_MOUNT_KEYS = ("yaw_deg", "fov_deg", "x_m", "y_m")  # [streams.sim] keys that are Mount fields
#: What a simulated generic stream renders: an IMU's 6 float32 values (World.imu).
IMU_SCHEMA = ("<f4", [6])
#: How far behind its capture grid the simulated IMU's driver may fall before it skips captures.
IMU_FIFO_NS = NS_PER_S


@dataclass(frozen=True)
class SimSettings:
    seed: int = 0
    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    drop_prob: float = 0.0
    phase_ms: float = 0.0
    outage_start_s: float | None = None
    outage_duration_s: float = 0.0
    rate_factor: float = 1.0
    mount: Mount = DEFAULT_MOUNT
    corruption: Corruption | None = None

    def rate_hz(self, stream: StreamConfig) -> float:
        """The rate the simulated sensor actually captures at."""
        return stream.rate_hz * self.rate_factor

    @classmethod
    def from_stream(cls, stream: StreamConfig) -> SimSettings:
        """Parse and check ``stream.sim``; errors name the key (``streams[camera/front].sim.jitter_ms``)."""
        raw: dict[str, Any] = dict(stream.sim)
        where = f"streams[{stream.name}].sim"
        outage = raw.pop("outage", None)
        corruption = _corruption(stream, raw.pop("corruption", None), raw.pop("severity", None))
        known = {"seed", "latency_ms", "jitter_ms", "drop_prob", "phase_ms", "rate_factor", *_MOUNT_KEYS}
        unknown = sorted(set(raw) - known)
        if unknown:
            known |= {"outage", "corruption", "severity"}
            raise SimError(f"{where}: unknown keys {unknown}; known: {sorted(known)}")
        if stream.driver != "sim":
            # No simulated driver runs for it: only where the sensor sits means anything (to the viewer).
            faults = sorted(set(stream.sim) - set(_MOUNT_KEYS))
            if faults:
                raise SimError(
                    f"{where}: {faults} simulate a driver, and this stream's is {stream.driver!r}; only "
                    f"the mount keys {list(_MOUNT_KEYS)} apply to it (where the viewer draws it)"
                )
        if stream.modality == "generic" and stream.generic is not None:
            declared = (stream.generic.dtype, stream.generic.shape)
            if declared != IMU_SCHEMA:
                raise SimError(
                    f"streams[{stream.name}].generic: the simulated generic sensor is an IMU, dtype = "
                    f"{IMU_SCHEMA[0]!r} and shape = {IMU_SCHEMA[1]}; got {declared[0]!r} and {declared[1]} "
                    '(a generic sensor of your own: driver = "external", docs/PROTOCOL.md)'
                )
        if "fov_deg" in raw and stream.modality != "camera":
            raise SimError(f"{where}.fov_deg: only a camera has a field of view, this is a {stream.modality}")
        values: dict[str, Any] = {}
        for key, value in raw.items():
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise SimError(f"{where}.{key}: expected a finite number, got {value!r}")
            values[key] = value
        try:
            values["mount"] = Mount(**{key: values.pop(key) for key in _MOUNT_KEYS if key in values})
        except WorldError as exc:  # its message starts with the field's name
            raise SimError(f"{where}.{exc}") from exc
        if not (isinstance(values.get("seed", 0), int) and values.get("seed", 0) >= 0):
            raise SimError(f"{where}.seed: expected a non-negative integer, got {values['seed']!r}")
        for key in ("latency_ms", "jitter_ms"):
            if values.get(key, 0) < 0:
                raise SimError(f"{where}.{key}: must be >= 0, got {values[key]}")
        if values.get("rate_factor", 1) <= 0:
            raise SimError(f"{where}.rate_factor: must be > 0, got {values['rate_factor']}")
        rate_hz = stream.rate_hz * values.get("rate_factor", 1)
        if not 0 <= values.get("phase_ms", 0) < 1000 / rate_hz:
            raise SimError(f"{where}.phase_ms: must be in [0, one period), got {values['phase_ms']}")
        if not 0 <= values.get("drop_prob", 0) <= 1:
            raise SimError(f"{where}.drop_prob: must be in [0, 1], got {values['drop_prob']}")
        if outage is not None:
            if not isinstance(outage, dict) or set(outage) != {"start_s", "duration_s"}:
                raise SimError(f"{where}.outage: expected {{start_s = S, duration_s = S}}, got {outage!r}")
            start = outage["start_s"]
            if not all(
                isinstance(v, int | float) and not isinstance(v, bool) and v >= 0 for v in outage.values()
            ):
                raise SimError(f"{where}.outage: start_s and duration_s must be numbers >= 0, got {outage!r}")
            if not math.isfinite(start):
                raise SimError(
                    f"{where}.outage: start_s must be finite (duration_s = inf: for good), got {start}"
                )
            values["outage_start_s"] = float(outage["start_s"])
            values["outage_duration_s"] = float(outage["duration_s"])
        if stream.modality == "audio":
            chunk = AUDIO_SAMPLE_RATE / rate_hz
            if stream.sample_rate != AUDIO_SAMPLE_RATE:
                raise SimError(
                    f"streams[{stream.name}].sample_rate: the simulated microphone renders "
                    f"{AUDIO_SAMPLE_RATE} Hz, got {stream.sample_rate}"
                )
            if chunk != int(chunk):
                raise SimError(
                    f"streams[{stream.name}].rate_hz: the simulated microphone sends chunks of whole "
                    f"samples; {AUDIO_SAMPLE_RATE} Hz / {rate_hz:g} chunks per second is {chunk:g} samples"
                )
        return cls(**values, corruption=corruption)

    def describe(self) -> str:
        """The settings that differ from a perfect sensor at the ego's origin, for the driver's start-up
        log line; of the mount only what was set (a radar's would show a camera's default field of view)."""
        changed = [
            (f.name, getattr(self, f.name)) for f in fields(self) if getattr(self, f.name) != f.default
        ]
        parts = []
        for name, value in changed:
            if isinstance(value, Mount):
                parts += [
                    f"{f.name}={getattr(value, f.name):g}"
                    for f in fields(value)
                    if getattr(value, f.name) != f.default
                ]
            else:
                parts.append(f"{name}={value}")
        return ", ".join(parts) or "perfect sensor"


def _within(stamp: int, begin: int, end: int | None) -> bool:
    """Whether `stamp` lies in [begin, end), end None meaning for good."""
    return begin <= stamp and (end is None or stamp < end)


def _corruption(stream: StreamConfig, kind: object, severity: object) -> Corruption | None:
    """``[streams.sim] corruption`` and ``severity``, checked against the stream's modality."""
    where = f"streams[{stream.name}].sim"
    if kind is None:
        if severity is not None:
            raise SimError(f"{where}.severity: given without {where}.corruption")
        return None
    if kind not in CORRUPTIONS:
        raise SimError(f"{where}.corruption: {kind!r} is not one of {', '.join(CORRUPTIONS)}")
    severity = 2 if severity is None else severity
    if isinstance(severity, bool) or severity not in SEVERITIES:
        raise SimError(f"{where}.severity: must be 1, 2 or 3, got {severity!r}")
    corruption = Corruption(str(kind), int(severity))  # type: ignore[call-overload]
    if corruption.modality != stream.modality:
        raise SimError(
            f"{where}.corruption: {kind!r} corrupts a {corruption.modality}, this stream is a "
            f"{stream.modality}"
        )
    return corruption


@dataclass(frozen=True)
class Capture:
    """One tick of a sensor. `sent` is False for a capture lost to drop_prob or an outage (`why`)."""

    stamp_ns: int
    send_ns: int
    sent: bool
    why: str = ""


class SensorSchedule:
    """The capture stamps and send times of one simulated sensor from `start_ns` on.

    Capture k of a sensor at rate R (rate_hz x rate_factor) is stamped floor(k * 1e9 / R) ns after the
    epoch, plus the sensor's phase: sensors with commensurate rates capture at the same instants (as
    sensors on one trigger or PTP time base do), whatever the date, so runs are alike. Pure: the
    caller reads the clock, sleeps until `Capture.send_ns`, then publishes.
    """

    def __init__(self, stream: StreamConfig, settings: SimSettings, start_ns: int) -> None:
        self.settings = settings
        rate_hz = settings.rate_hz(stream)
        rate = Fraction(rate_hz).limit_denominator(1000)
        self._num, self._den = NS_PER_S * rate.denominator, rate.numerator  # stamp_k = k * num // den
        self.period_ns = self._num // self._den
        self.chunk = round(AUDIO_SAMPLE_RATE / rate_hz) if stream.modality == "audio" else 0
        # An IMU's FIFO holds its samples while the driver is late, up to its depth: sent late, not lost.
        self.fifo_ns = IMU_FIFO_NS if stream.modality == "generic" else 0
        phase = round(settings.phase_ms * 1e6)
        if stream.modality == "audio":  # keep the first sample of every chunk on the world's sample grid
            sample_ns = NS_PER_S // AUDIO_SAMPLE_RATE
            phase = phase // sample_ns * sample_ns
        self.phase_ns = phase
        self._next = self._index_at(start_ns)
        self._rng = np.random.default_rng([settings.seed, zlib.crc32(stream.name.encode())])
        self._outage: tuple[int, int | None] | None = None  # [begin, end) in ns; end None: for good
        if settings.outage_start_s is not None:
            begin = start_ns + round(settings.outage_start_s * NS_PER_S)
            duration = settings.outage_duration_s
            self._outage = (begin, begin + round(duration * NS_PER_S) if math.isfinite(duration) else None)

    def _stamp(self, k: int) -> int:
        return k * self._num // self._den + self.phase_ns

    def _index_at(self, t_ns: int) -> int:
        """The first capture index whose stamp is at or after t_ns."""
        k = max(0, (t_ns - self.phase_ns) * self._den // self._num)
        while self._stamp(k) < t_ns:
            k += 1
        return k

    def next(self) -> Capture:
        stamp = self._stamp(self._next)
        self._next += 1
        s = self.settings
        delay_ms = max(
            0.0, s.latency_ms + (self._rng.uniform(-s.jitter_ms, s.jitter_ms) if s.jitter_ms else 0.0)
        )
        send = stamp + round(delay_ms * 1e6)
        if self._outage is not None and _within(stamp, *self._outage):
            return Capture(stamp, send, False, "outage")
        if s.drop_prob and self._rng.random() < s.drop_prob:
            return Capture(stamp, send, False, "dropped")
        return Capture(stamp, send, True)

    def skip_to(self, now_ns: int) -> int:
        """Skip the captures a late driver can no longer send on time (a newer capture's send time,
        stamp + latency_ms, has passed by `now_ns`); returns how many were skipped. A real sensor
        overwrites such frames. A generic sensor (the IMU) has a FIFO: it skips only captures older
        than its depth (IMU_FIFO_NS), and sends the others late."""
        latency_ns = round(self.settings.latency_ms * 1e6)
        first_current = max(self._next, self._index_at(now_ns - latency_ns - self.fifo_ns + 1) - 1)
        skipped = first_current - self._next
        self._next = first_current
        return skipped


class RenderLead:
    """How long before its send time a capture should be rendered: twice a running mean of the render
    cost plus a margin, at most one period.

    Rendering just in time, rather than right after the previous send, keeps the simulators off the
    CPU at the instant the pipeline works on the capture just sent (on a small machine the simulated
    sensors would otherwise compete with the nodes they feed, which real sensors do not).
    """

    def __init__(self, period_ns: int, margin_ns: int = 3_000_000, weight: float = 0.2) -> None:
        self.period_ns = period_ns
        self.margin_ns = margin_ns
        self.weight = weight
        self.mean_ns: float | None = None

    def update(self, render_ns: int) -> None:
        self.mean_ns = (
            render_ns if self.mean_ns is None else self.mean_ns + self.weight * (render_ns - self.mean_ns)
        )

    def lead_ns(self) -> int:
        if self.mean_ns is None:
            return self.period_ns  # nothing known yet: render at once
        return min(self.period_ns, round(2 * self.mean_ns) + self.margin_ns)


def render(
    world: World, stream: StreamConfig, capture: Capture, chunk: int
) -> tuple[dict[str, np.ndarray], dict]:
    """The arrays and meta of one capture from the stream's mount, named as PROTOCOL.md section 5 says;
    degraded by the stream's corruption, if it has one."""
    settings = SimSettings.from_stream(stream)
    mount, stamp = settings.mount, capture.stamp_ns
    if stream.modality == "generic":  # the simulated generic sensor is an IMU
        return {"values": world.imu(stamp, mount)}, {}
    if stream.modality == "audio":
        payload = world.audio(stamp, chunk, mount=mount)
    else:
        payload = {"camera": world.camera, "lidar": world.lidar, "radar": world.radar}[stream.modality](
            stamp, mount
        )
    if settings.corruption is not None:
        rng = np.random.default_rng([settings.seed, zlib.crc32(stream.name.encode()), stamp, 2000])
        payload = settings.corruption.apply(payload, rng)
    if stream.modality == "camera":
        return {"image": payload}, {"encoding": "rgb8"}
    if stream.modality == "lidar":
        return {"points": payload}, {}
    if stream.modality == "radar":
        return {"detections": payload}, {}
    return {"samples": payload[:, None]}, {"sample_rate": stream.sample_rate}  # mono: frames x 1 channel
