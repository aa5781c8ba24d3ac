"""The recorder: subscribes to sensor streams (and the pipeline's outputs) and writes every message to MCAP.

It receives with `Subscriber.recv`, in order, never draining to the newest, on a socket with a deep
receive queue, and writes each message as it arrives. Nothing it receives is dropped silently: a message
that fails wire validation is counted by reason, a seq gap (the publisher dropped before the recorder saw
it) is counted per stream, and a write failure stops the recording with the count of what was not
written. Per sensor stream it also keeps how late after capture it logged a message at most, and how many
more than sync.max_wait_ms late: a replay takes the log time as arrival. The counters go into the file's
report metadata and `RecordReport`.
"""

from __future__ import annotations

import glob
import logging
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fusion_pipeline.config import Config, StreamConfig
from fusion_pipeline.logs.errors import LogError
from fusion_pipeline.logs.records import DEFAULT_CHUNK_BYTES
from fusion_pipeline.logs.writer import LogWriter, SplitPolicy, part_path
from fusion_pipeline.node import POLL_MS
from fusion_pipeline.protocol import RESULT_STREAM, SET_STREAM
from fusion_pipeline.transport.sockets import Subscriber, say_handshakes
from fusion_pipeline.transport.wire import Limits

__all__ = [
    "RecordReport",
    "RecordSettings",
    "Recorder",
    "existing_output",
    "stream_metadata",
    "union_limits",
    "unused_path",
]

log = logging.getLogger(__name__)

#: Receive queue depth: ~3 s of the demo's four sensors, so a slow disk write is absorbed, not dropped.
RECV_HWM = 1000
#: Nothing from any stream for this long is said (once, and again when messages come back): a recorder
#: left running after its pipeline stopped, or started on the wrong endpoints, records nothing silently.
SILENCE_SAID_S = 5.0


@dataclass(frozen=True)
class RecordSettings:
    path: Path
    streams: Sequence[str] = ()  # empty = every sensor stream and the results
    duration_s: float | None = None
    split: SplitPolicy = SplitPolicy()
    chunk_bytes: int = DEFAULT_CHUNK_BYTES

    @classmethod
    def from_config(cls, config: Config) -> RecordSettings:
        record = config.record
        return cls(
            path=Path(record.path),
            streams=tuple(record.streams),
            split=SplitPolicy(
                max_bytes=None if record.split_size_mb is None else int(record.split_size_mb * 1024 * 1024),
                max_duration_ns=None
                if record.split_duration_s is None
                else int(record.split_duration_s * 1e9),
            ),
        )


def unused_path(path: Path, split: SplitPolicy) -> Path:
    """`path`, or ``NAME-1.mcap``, ``NAME-2.mcap``... if it is taken: a restarted or re-run recorder
    node never overwrites an earlier recording (a split recording is taken when any part exists)."""
    candidate, n = path, 0
    while existing_output(candidate, split) is not None:
        n += 1
        candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
    return candidate


def existing_output(path: Path, split: SplitPolicy) -> Path | None:
    """A file that a recording to `path` would have to write over: `path` itself, or, split, any part
    (``NAME_000.mcap``, ``NAME_001.mcap``...: a part moved away leaves the later ones), else None."""
    if not split.enabled:
        return path if path.exists() else None
    first = part_path(path, 0)
    parts = re.compile(rf"{re.escape(path.stem)}_\d{{3,}}{re.escape(first.suffix)}")
    names = sorted(p for p in first.parent.glob(f"{glob.escape(path.stem)}_*") if parts.fullmatch(p.name))
    return names[0] if names else None


@dataclass
class _StreamCount:
    written: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    lost_upstream: int = 0  # seq gaps: the publisher dropped these before the recorder got them
    out_of_order: int = 0  # seq went backwards (a driver restart, or a replay loop): written anyway
    # A sensor stream's log time minus its capture time (stamp - offset): what a replay's synchronizer
    # sees as the message's arrival. The largest, and how many came later than sync.max_wait_ms.
    lag_ms_max: float | None = None
    late: int = 0


@dataclass
class RecordReport:
    """What a recording holds and what it could not hold."""

    paths: list[Path]
    streams: dict[str, _StreamCount] = field(default_factory=dict)
    malformed: Counter[str] = field(default_factory=Counter)
    not_written: int = 0
    error: str = ""
    wall_s: float = 0.0
    bytes_in: int = 0
    max_wait_ms: float = 0.0  # sync.max_wait_ms, what `late` is measured against
    #: Endpoints whose handshake still failed at the end (a driver that refused the recorder's key), how.
    handshake_failing: dict[str, str] = field(default_factory=dict)

    @property
    def written(self) -> int:
        return sum(s.written for s in self.streams.values())

    @property
    def empty(self) -> bool:
        """The log holds no message and no write error to show: it is no recording."""
        return self.written == 0 and not self.error

    @property
    def silent(self) -> list[str]:
        """The streams asked for that sent nothing during the recording: the log has none of them."""
        return sorted(name for name, s in self.streams.items() if s.first_seq is None)

    @property
    def lost(self) -> int:
        """Every message the recording misses that the recorder could know of."""
        upstream = sum(s.lost_upstream for s in self.streams.values())
        return upstream + sum(self.malformed.values()) + self.not_written

    def as_json(self) -> dict[str, Any]:
        """The report with its numbers as numbers (`record --report-json`)."""
        return {
            "paths": [str(p) for p in self.paths],
            "written": self.written,
            "not_written": self.not_written,
            "lost": self.lost,
            "wall_s": round(self.wall_s, 3),
            "bytes_in": self.bytes_in,
            "malformed": dict(sorted(self.malformed.items())),
            "streams": {name: asdict(s) for name, s in sorted(self.streams.items())},
            "silent": self.silent,
            "handshake_failing": self.handshake_failing,
            "error": self.error,
        }

    def as_metadata(self) -> dict[str, str]:
        """The report flattened to strings, as MCAP metadata must be."""
        out = {
            "written": str(self.written),
            "not_written": str(self.not_written),
            "wall_s": f"{self.wall_s:.3f}",
            "bytes_in": str(self.bytes_in),
            **{f"malformed_{reason}": str(n) for reason, n in sorted(self.malformed.items())},
        }
        if self.silent:
            out["silent"] = ", ".join(self.silent)
        if self.handshake_failing:
            out["handshake_failing"] = say_handshakes(self.handshake_failing)
        for name, s in self.streams.items():
            out[f"{name}.written"] = str(s.written)
            out[f"{name}.seq"] = "none" if s.first_seq is None else f"{s.first_seq}..{s.last_seq}"
            out[f"{name}.lost_upstream"] = str(s.lost_upstream)
            out[f"{name}.out_of_order"] = str(s.out_of_order)
            if s.lag_ms_max is not None:
                out[f"{name}.lag_ms_max"] = f"{s.lag_ms_max:.1f}"
                out[f"{name}.late"] = str(s.late)
        if self.error:
            out["error"] = self.error
        return out

    def summary(self) -> str:
        lines = [
            f"recorded {self.written} messages ({self.bytes_in / 1e6:.1f} MB) in {self.wall_s:.1f} s "
            f"to {', '.join(map(str, self.paths))}"
        ]
        for name, s in sorted(self.streams.items()):
            lines.append(
                f"  {name}: NOTHING received: the log holds none of it"
                if s.first_seq is None
                else f"  {name}: {s.written} written, seq {s.first_seq}..{s.last_seq}, "
                f"{s.lost_upstream} lost upstream, {s.out_of_order} out of order"
                + ("" if s.lag_ms_max is None else f", logged up to {s.lag_ms_max:.1f} ms after capture")
            )
            if s.late:
                lines.append(
                    f"    {s.late} of them logged more than sync.max_wait_ms ({self.max_wait_ms:g} ms) after "
                    "capture: a replay's sets may leave them out (the live ones had them only if they "
                    "reached the pipeline sooner than the recorder, one short of CPU)"
                )
        lines += [f"  {url}: HANDSHAKE FAILING: {problem}" for url, problem in self.handshake_failing.items()]
        if self.malformed:
            lines.append(f"  malformed (not written): {dict(self.malformed)}")
        if self.not_written:
            lines.append(f"  NOT WRITTEN: {self.not_written} ({self.error})")
        return "\n".join(lines)


def stream_metadata(stream: StreamConfig) -> dict[str, str]:
    """MCAP channel metadata describing a configured stream."""
    meta = {"rate_hz": f"{stream.rate_hz:g}", "offset_ms": f"{stream.offset_ms:g}"}
    if stream.sample_rate is not None:
        meta["sample_rate"] = str(stream.sample_rate)
    return meta


def _sources(config: Config, run_dir: Path, wanted: Sequence[str]) -> dict[str, str]:
    """Stream name -> endpoint to subscribe to, for the streams asked for (empty = sensors + results)."""
    available = {s.name: config.endpoint(s.endpoint, run_dir) for s in config.streams}
    available[SET_STREAM] = config.endpoint(config.sync.endpoint, run_dir)
    available[RESULT_STREAM] = config.local_results_endpoint(run_dir)
    names = list(wanted) or [*(s.name for s in config.streams), RESULT_STREAM]
    unknown = [n for n in names if n not in available]
    if unknown:
        raise LogError(f"cannot record {unknown}: not a stream of the config (streams: {sorted(available)})")
    return {name: available[name] for name in names}


def union_limits(config: Config) -> Limits:
    """The limits of one socket that serves every stream (the recorder's, the viewer's): what the most
    permissive stream admits."""
    limits = [Limits.from_config(s.limits) for s in config.streams]
    return Limits(
        max_arrays=max(max(x.max_arrays for x in limits), 16),
        max_ndim=max(max(x.max_ndim for x in limits), 4),
        max_array_bytes=max(x.max_array_bytes for x in limits),
        max_total_bytes=max(x.max_total_bytes for x in limits),
        allowed_dtypes=frozenset().union(*(x.allowed_dtypes for x in limits)),
    )


class Recorder:
    """Subscribes to the chosen streams of a running graph and writes them to a log until stopped."""

    def __init__(self, config: Config, run_dir: Path, settings: RecordSettings) -> None:
        self.settings = settings
        sources = _sources(config, run_dir, settings.streams)
        urls = sorted(set(sources.values()))
        # The subscriber first: one that cannot connect (a bad endpoint) must not leave a log file started,
        # which would hold nothing and refuse a retry under the same name.
        self.subscriber = Subscriber(
            urls,
            topics=list(sources),
            exact=True,  # the streams named, not others whose names begin with theirs
            limits=union_limits(config),
            hwm=RECV_HWM,
            curve=config.curve_for(urls),
        )
        try:
            self.writer = LogWriter(
                settings.path,
                chunk_bytes=settings.chunk_bytes,
                split=settings.split,
                metadata={"recorded_by": "fusion-pipeline record", "pipeline": config.pipeline.name},
                streams={s.name: stream_metadata(s) for s in config.streams},
            )
        except BaseException:
            self.subscriber.close()
            raise
        # Every stream asked for is in the report, one that sends nothing too: said, not left out.
        self.report = RecordReport(
            paths=self.writer.paths,
            streams={name: _StreamCount() for name in sources},
            max_wait_ms=config.sync.max_wait_ms,
        )
        self._offsets = {s.name: s.offset_ns for s in config.streams}  # sensor streams, not sets or results
        self._started = time.monotonic()
        # The file it writes: a split recording's first part, NAME_000.mcap, not NAME.mcap.
        log.info("recording %s -> %s", ", ".join(sources), self.writer.paths[0].resolve())

    def poll(self, timeout_ms: int = POLL_MS) -> bool:
        """Receive and write at most one message; False when none came within `timeout_ms`."""
        sample = self.subscriber.recv(timeout_ms=timeout_ms)
        if sample is None:
            return False
        log_time_ns = time.time_ns()
        count = self.report.streams.setdefault(sample.stream, _StreamCount())
        if count.last_seq is not None:
            if sample.seq > count.last_seq + 1:
                count.lost_upstream += sample.seq - count.last_seq - 1
            elif sample.seq <= count.last_seq:
                count.out_of_order += 1
        if count.first_seq is None:
            count.first_seq = sample.seq
        count.last_seq = sample.seq
        if (offset_ns := self._offsets.get(sample.stream)) is not None:
            lag_ms = (log_time_ns - (sample.stamp_ns - offset_ns)) / 1e6
            count.lag_ms_max = lag_ms if count.lag_ms_max is None else max(count.lag_ms_max, lag_ms)
            if lag_ms > self.report.max_wait_ms:
                count.late += 1
        if self.report.error:
            self.report.not_written += 1
            return True
        count.written += 1
        try:
            self.writer.write(sample, log_time_ns)
        except LogError as exc:
            # The file takes no more (disk full, say): what the open chunk held is lost, and everything
            # from here on is counted, not written.
            self._lose(exc)
            log.error("%s; counting what is not written from now on", exc)
        return True

    def _lose(self, exc: LogError) -> None:
        report = self.report
        report.error = report.error or str(exc)
        for stream, n in getattr(exc, "lost", {}).items():
            report.streams[stream].written -= n
            report.not_written += n

    def run(
        self,
        stop: Callable[[], bool],
        beat: Callable[[dict[str, int]], None] | None = None,
        silence_s: float = SILENCE_SAID_S,
    ) -> None:
        """Record until `stop()` or the configured duration has passed; `silence_s` with no message from
        any stream is said as a warning, and the messages' return after it too."""
        duration = self.settings.duration_s
        heard = self._started  # the last message, or the start
        said_silent = False
        while not stop():
            now = time.monotonic()
            if duration is not None and now - self._started >= duration:
                break
            if self.poll():
                if said_silent:
                    log.info("recording again: messages came after %.1f s with none", now - heard)
                heard, said_silent = time.monotonic(), False
            elif not said_silent and now - heard >= silence_s:
                streams = ", ".join(self.report.streams)
                # Messages that came and were refused say more than "is it running?" (as `view` says).
                refused = sum(self.subscriber.malformed.values())
                failing = self.subscriber.handshake_failing
                why = (
                    f"{refused} malformed messages dropped so far"
                    if refused
                    else say_handshakes(failing)
                    if failing
                    else "is the pipeline running, on these endpoints?"
                    if heard == self._started
                    else "has the pipeline stopped?"
                )
                span = now - heard
                since = (
                    f"in the {span:.0f} s since the start" if heard == self._started else f"for {span:.0f} s"
                )
                log.warning(
                    "nothing recorded %s from any stream recorded (%s): still recording; %s",
                    since,
                    streams,
                    why,
                )
                said_silent = True
            if beat is not None:
                beat(self.counters())

    def counters(self) -> dict[str, int]:
        report = self.report
        return {
            "written": report.written,
            "not_written": report.not_written,
            "lost_upstream": sum(s.lost_upstream for s in report.streams.values()),
            **{f"malformed_{k}": v for k, v in self.subscriber.malformed.items()},
        }

    def close(self) -> RecordReport:
        """Stop receiving, finish the file with the report in it, and return the report."""
        report = self.report
        report.malformed.update(self.subscriber.malformed)
        report.handshake_failing = self.subscriber.handshake_failing
        report.wall_s = time.monotonic() - self._started
        report.bytes_in = self.writer.bytes_in
        self.subscriber.close()
        try:
            self.writer.close(report.as_metadata())
        except LogError as exc:
            self._lose(exc)
        return report
