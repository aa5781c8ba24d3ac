"""What a replay sends, in which order: the log's streams planned onto the config's, then every message in
log order. Pure: no sockets, no clock. The replayer publishes these messages on the drivers' endpoints,
and the offline graph (fusion_pipeline.offline) feeds them to its ingest stages, so both see the same
messages, numbered and stamped alike.

- `plan_streams`: which log stream is replayed as which config stream (``--streams``, ``--remap``), with
  everything that does not fit refused by name.
- `send_order`: the planned streams' messages in log order, between ``start_s`` and ``end_s`` (counted
  from the log's first message), renamed to their config stream. Into a graph (``settings.graph``) each
  carries ``meta.replay_seq`` (its index in send order: the synchronizer restores this order,
  fusion_pipeline.sync.reorder) and ``meta.log_time_ns`` (when it was recorded: ingest's clock for the
  stream). With ``loop``, each later pass shifts stamp_ns by the pass length and seq by each stream's
  count, so downstream sees one continuous, monotonic recording and never mistakes a loop for a restart
  or a duplicate.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fusion_pipeline.config import Config
from fusion_pipeline.logs.errors import LogError
from fusion_pipeline.logs.reader import LogMessage, LogReader
from fusion_pipeline.protocol import RESULT_STREAM, SET_STREAM
from fusion_pipeline.transport.wire import Sample

__all__ = [
    "LOOP_GAP_NS",
    "Outgoing",
    "ReplaySettings",
    "absent_streams",
    "left_out_streams",
    "message_total",
    "plan_streams",
    "send_order",
]

log = logging.getLogger("fusion_pipeline.logs.send_order")


#: Pause between passes of a looped replay (log time), so a pass's first stamps follow the last ones.
LOOP_GAP_NS = 1_000_000_000


@dataclass(frozen=True)
class ReplaySettings:
    rate: float | None = 1.0  # None = as fast as possible
    loop: bool = False
    start_s: float = 0.0  # seconds after the log's first message
    end_s: float | None = None
    streams: Sequence[str] = ()  # log stream names; empty = every log stream the config knows
    remap: Mapping[str, str] = field(default_factory=dict)  # log stream -> config stream
    graph: bool = False  # a pipeline consumes the replay: messages carry replay_seq, results are awaited
    # Longer than the synchronizer's wait for a hole in its replay order (1 s), so a set behind one still
    # has its result awaited.
    results_timeout_s: float = 2.0
    subscribers_timeout_s: float = 10.0
    results_path: Path | None = None
    progress: bool = True


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message as a replay sends it."""

    sample: Sample  # under its config stream's name, shifted on a later pass, with the replay meta
    log_time_ns: int  # when it was recorded, shifted with the stamps on a later pass
    pass_index: int  # 0 for the first pass over the log
    offset_ns: int  # log time since its pass's first message (what a paced replay waits for)


def message_total(reader: LogReader, plan: Mapping[str, str], settings: ReplaySettings) -> int | None:
    """How many messages a replay of the whole log sends, from the files' summaries (for a progress bar);
    None when that is not the count: a window (start_s, end_s) or a loop, or a file without a summary."""
    if settings.start_s or settings.end_s is not None or settings.loop:
        return None
    return reader.count(plan)


def left_out_streams(
    config: Config, logged: Mapping[str, object], plan: Mapping[str, str], settings: ReplaySettings
) -> list[str]:
    """The log's streams the plan leaves out, said with why (--streams chose others, or the config has
    no such stream), in name order."""
    in_config = {s.name for s in config.streams}
    left_out = sorted(name for name in logged if name not in plan)
    unchosen = [n for n in left_out if settings.streams and settings.remap.get(n, n) in in_config]
    # A recording's own sets and results (`record` takes them by default): the replay makes them anew.
    made = [n for n in left_out if n in (SET_STREAM, RESULT_STREAM) and n not in unchosen]
    unknown = [n for n in left_out if n not in unchosen and n not in made]
    for names, why in (
        (unchosen, "not in --streams"),
        (made, "the recorded pipeline output, which the replay makes anew"),
        (unknown, "no such stream in the config"),
    ):
        if names:
            log.info("not replaying %s: %s", ", ".join(names), why)
    return left_out


def absent_streams(config: Config, logged: Mapping[str, object], settings: ReplaySettings) -> list[str]:
    """The config's streams the log holds no messages for (after --remap), said in a WARNING: absent from
    every set of the replay (a stream renamed in the config, a log from another suite)."""
    held = {settings.remap.get(name, name) for name in logged}
    if absent := [s.name for s in config.streams if s.name not in held]:
        log.warning("the log holds no %s: absent from every set of this replay", ", ".join(absent))
    return absent


def plan_streams(
    config: Config, logged: Mapping[str, Mapping[str, str]], settings: ReplaySettings
) -> dict[str, str]:
    """Log stream -> config stream it is published as; a logged stream the config does not have is left
    out (unless --streams names it). Errors name what does not fit."""
    known = {s.name: s for s in config.streams}
    for old, new in settings.remap.items():
        if old not in logged:
            raise LogError(f"--remap {old}={new}: the log has no stream {old!r} (it has {sorted(logged)})")
        if new not in known:
            raise LogError(f"--remap {old}={new}: the config has no stream {new!r} (it has {sorted(known)})")
    named_twice = sorted({name for name in settings.streams if settings.streams.count(name) > 1})
    if named_twice:
        raise LogError(f"--streams {named_twice}: given twice; name each stream once")
    wanted = list(settings.streams) or list(logged)
    missing = [name for name in wanted if name not in logged]
    if missing:
        raise LogError(f"--streams {missing}: not in the log (it has {sorted(logged)})")
    unused = [f"{old}={new}" for old, new in settings.remap.items() if old not in wanted]
    if unused:
        raise LogError(
            f"--remap {', '.join(unused)}: not a stream --streams replays ({wanted}); "
            "add it to --streams or drop the remap"
        )
    plan: dict[str, str] = {}
    for name in wanted:
        target = settings.remap.get(name, name)
        if target not in known:
            if settings.streams:
                raise LogError(f"log stream {name!r} has no stream in the config; map it with --remap")
            continue  # the log's other streams (its results, say): the caller says which it leaves out
        modality = logged[name].get("modality")
        if modality != known[target].modality:
            raise LogError(
                f"log stream {name!r} is {modality!r} but config stream {target!r} "
                f"is {known[target].modality!r}"
            )
        twin = next((other for other, planned in plan.items() if planned == target), None)
        if twin is not None:  # one config stream would carry two recordings, their seqs interleaved
            remaps = [f"{source}={target}" for source in (twin, name) if source in settings.remap]
            raise LogError(
                f"--remap {', '.join(remaps)}: log streams {twin!r} and {name!r} would both be "
                f"replayed as {target!r}; leave one out with --streams or remap it elsewhere"
            )
        plan[name] = target
    if not plan:
        raise LogError(
            f"nothing to replay: no log stream matches a config stream (log has {sorted(logged)}, the "
            f"config {[s.name for s in config.streams]}): give the config the log was recorded with (-c; "
            "without it, the demo's), or map the log's names onto the config's (replay --remap LOG=CONFIG)"
        )
    if settings.graph:  # the graph makes no set without these: it would run to "sets 0" and exit 0
        replayed = set(plan.values())
        reference = config.sync.reference if config.sync.mode == "reference" else None
        for name in [s.name for s in config.streams if s.required or s.name == reference]:
            if name not in replayed:
                role = "the reference stream" if name == reference else "a required stream"
                where = "--streams leaves it out" if settings.streams else "the log has no such stream"
                raise LogError(
                    f"config stream {name!r} ({role}) is not replayed: {where}; the graph would make no "
                    f"set (replay it, or --remap a log stream onto it; the log has {sorted(logged)})"
                )
    return plan


def send_order(reader: LogReader, plan: Mapping[str, str], settings: ReplaySettings) -> Iterator[Outgoing]:
    """The messages a replay sends, in order: one pass over the log, or passes without end with
    ``loop`` (a pass that holds no message ends it). Reads the log again for each pass."""
    shift = _Pass()
    sent = 0
    while True:
        first = last = None
        for message in _window(reader.messages(plan), settings.start_s, settings.end_s):
            if first is None:
                first = message.log_time_ns
            last = message.log_time_ns
            sample = shift.apply(message.sample, plan[message.sample.stream])
            log_time_ns = message.log_time_ns + shift.stamp_shift_ns
            if settings.graph:
                meta = {**sample.meta, "replay_seq": sent, "log_time_ns": log_time_ns}
                sample = dataclasses.replace(sample, meta=meta)
            yield Outgoing(sample, log_time_ns, shift.index, message.log_time_ns - first)
            sent += 1
        if first is None or last is None or not settings.loop:
            return
        shift.next(last - first)


def _window(messages: Iterator[LogMessage], start_s: float, end_s: float | None) -> Iterator[LogMessage]:
    """The messages between start_s and end_s, counted from the first message's log time."""
    origin = None
    for message in messages:
        if origin is None:
            origin = message.log_time_ns
        offset_s = (message.log_time_ns - origin) / 1e9
        if offset_s < start_s:
            continue
        if end_s is not None and offset_s > end_s:
            return
        yield message


class _Pass:
    """Shifts a looped pass: stamps by the pass length, seq by each stream's message count."""

    def __init__(self) -> None:
        self.index = 0
        self.stamp_shift_ns = 0
        self.seq_shift: dict[str, int] = {}
        self.counts: dict[str, int] = {}

    def apply(self, sample: Sample, stream: str) -> Sample:
        if self.index == 0:
            self.counts[stream] = self.counts.get(stream, 0) + 1
            return sample if stream == sample.stream else dataclasses.replace(sample, stream=stream)
        return dataclasses.replace(
            sample,
            stream=stream,
            stamp_ns=sample.stamp_ns + self.stamp_shift_ns,
            seq=sample.seq + self.seq_shift.get(stream, 0),
        )

    def next(self, span_ns: int) -> None:
        self.index += 1
        self.stamp_shift_ns += span_ns + LOOP_GAP_NS
        for stream, n in self.counts.items():
            self.seq_shift[stream] = self.seq_shift.get(stream, 0) + n
