"""ROS 2 bag interop (extra ``[ros]``, built on rosbags): import a rosbag2 into a log, export a log to one.

Import (``fusion-pipeline import-ros2 BAG -o LOG.mcap --map TOPIC=STREAM[:modality] ...``) reads rosbag2
in sqlite3 or mcap storage and converts the messages of each mapped topic into samples (which types, and
what they become: `fusion_pipeline.logs.ros2_messages`). stamp_ns is the message header's stamp (the
bag's receive time for AudioData, which has no header; a zero header stamp is kept, and counted per topic
in a warning), log_time the bag's timestamp, seq a per-stream count from 0 (ROS 2 messages carry none; a
result's JSON does). A mapped topic of another type or encoding, or a damaged bag, is refused with an
error naming the topic and the type; unmapped topics are skipped.

Export (``fusion-pipeline export-ros2 LOG.mcap [RESULTS.mcap] -o BAG``) writes the inverse, an audio
topic's AudioInfo on ``TOPIC_info`` whenever its format changes; a message's bag timestamp is its log
time, or its stamp in a file a replay wrote (LogReader.timeline_ns). The bag is rosbag2 version 8 (ROS 2 Iron
and newer play it) in sqlite3 or mcap storage, directory 0700 and files 0600. Topics as export-foxglove:
"/" + stream name, ``/STREAM@SOURCE`` for a stream an earlier input already holds. What the bag cannot
carry is logged per topic: sets (skipped), camera, lidar and radar messages whose array is not of its
PROTOCOL.md section 5 shape (skipped, counted with the reason), sensor meta keys other than those import
makes again, sensor seq numbers, dtype conversions, a recording's channel metadata `rate_hz` and
`offset_ms`.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import shutil
import sqlite3
import stat
import tempfile
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mcap.reader import make_reader

from fusion_pipeline.logs.errors import Ros2Error
from fusion_pipeline.logs.reader import LogReader, existing_logs, say_cut_short
from fusion_pipeline.logs.records import REPORT_METADATA
from fusion_pipeline.logs.ros2_messages import (
    AUDIO_INFO,
    INFO_SUFFIX,
    MODALITIES,
    RADAR_ONLY_FIELDS,
    STRING,
    AudioFormat,
    audio_info,
    from_ros,
    losses,
    odd_shape,
    radar_fields,
    require_rosbags,
    result_from_ros,
    sample_audio_format,
    to_ros,
    topic_audio_format,
    typestore,
)
from fusion_pipeline.logs.sources import SourceTopics, log_sources
from fusion_pipeline.logs.writer import LOG_MODE, LogWriter
from fusion_pipeline.protocol import STREAM_NAME_MAX, STREAM_NAME_PATTERN
from fusion_pipeline.transport.wire import Sample

__all__ = ["TopicMap", "export_ros2", "import_ros2", "parse_map"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TopicMap:
    """One ``--map TOPIC=STREAM[:modality]``."""

    topic: str
    stream: str
    modality: str | None = None

    def __str__(self) -> str:
        return f"{self.topic}={self.stream}" + (f":{self.modality}" if self.modality else "")


def parse_map(items: Sequence[str]) -> list[TopicMap]:
    maps = []
    for item in items:
        topic, sep, rest = item.partition("=")
        stream, _, modality = rest.partition(":")
        if not sep or not topic or not stream:
            raise Ros2Error(f"--map {item!r}: expected TOPIC=STREAM[:modality]")
        if len(stream) > STREAM_NAME_MAX or not re.match(STREAM_NAME_PATTERN, stream):
            raise Ros2Error(
                f"--map {item!r}: stream name {stream!r} is not 1 to {STREAM_NAME_MAX} characters of "
                "A-Z a-z 0-9 _ . / - (docs/PROTOCOL.md section 6)"
            )
        if modality and modality not in ("camera", "lidar", "radar", "audio", "generic", "result"):
            raise Ros2Error(
                f"--map {item!r}: modality must be camera, lidar, radar, audio, generic or result"
            )
        maps.append(TopicMap(topic, stream, modality or None))
    return maps


# -- import ---------------------------------------------------------------------------------------------


def _by_topic(maps: Sequence[TopicMap]) -> dict[str, TopicMap]:
    """Topic -> its map, refusing a topic mapped twice (one would be dropped) and two topics mapped to
    one stream (their messages and seq counts would be mixed into one). A map repeated as it is counts
    once."""
    by_topic: dict[str, TopicMap] = {}
    by_stream: dict[str, TopicMap] = {}
    for m in maps:
        first = by_topic.setdefault(m.topic, m)
        if first != m:
            raise Ros2Error(f"--map {first} and --map {m}: topic {m.topic} mapped twice; map it once")
        other = by_stream.setdefault(m.stream, m)
        if other.topic != m.topic:
            raise Ros2Error(
                f"--map {other} and --map {m}: two topics into stream {m.stream!r}; give each its own stream"
            )
    return by_topic


def _bag_messages(reader: Any, connections: Sequence[Any], bag: Path) -> Iterator[tuple[Any, int, bytes]]:
    """The bag's messages on `connections`; a damaged bag is a Ros2Error, not the storage's traceback."""
    messages = reader.messages(connections=connections)
    while True:
        try:
            item = next(messages)
        except StopIteration:
            return
        except Exception as exc:  # sqlite3, the mcap storage and rosbags each raise their own types
            raise Ros2Error(
                f"{bag}: cannot read the bag (damaged?): {type(exc).__name__}: {exc}{_repair_hint(bag)}"
            ) from exc
        yield item


def _repair_hint(bag: Path) -> str:
    """What gets a bag that cannot be opened or read to import, by what it is (nothing when unknown)."""
    if bag.is_dir() and not (bag / "metadata.yaml").exists():
        return "; the directory has no metadata.yaml: give its .mcap or .db3 file itself"
    suffixes = {bag.suffix} if bag.is_file() else {f.suffix for f in bag.iterdir()} if bag.is_dir() else set()
    if (library := _library(bag) if bag.is_file() else "").startswith("fusion-pipeline"):
        return (
            f"; it is a fusion-pipeline log ({library}), not a ROS 2 bag: replay, view and the exports "
            "read it as it is"
        )
    if ".mcap" in suffixes:
        return "; `mcap recover FILE -o NEW.mcap` (the mcap CLI) writes what a damaged MCAP file holds"
    if ".db3" in suffixes:
        return "; `sqlite3 FILE .recover | sqlite3 NEW.db3` keeps what a damaged database holds"
    return ""


def _library(path: Path) -> str:
    """The library an MCAP file's header names ("" for anything else, or a file that cannot be read)."""
    try:
        with path.open("rb") as f:
            return make_reader(f).get_header().library
    except Exception:  # not an MCAP file, or a damaged one: no library to name
        return ""


def _deserialize(store: Any, raw: bytes, msgtype: str, where: str) -> Any:
    try:
        return store.deserialize_cdr(raw, msgtype)
    except Exception as exc:  # rosbags' CDR decoder raises struct, index and value errors on bad bytes
        raise Ros2Error(
            f"{where}: message does not decode as {msgtype}: {type(exc).__name__}: {exc}"
        ) from exc


def import_ros2(
    bag: Path,
    out: Path,
    maps: Sequence[TopicMap],
    *,
    sample_rate: int | None = None,
    channels: int | None = None,
) -> dict[str, int]:
    """Convert the mapped topics of a rosbag2 into a log; return messages written per stream. An audio
    topic's format comes from its AudioInfo topic (``TOPIC_info``) when the bag has one, which
    `sample_rate` and `channels` (default 1) must then agree with; they are refused when no mapped topic
    is audio. A topic mapped twice, or two topics mapped to one stream, are refused too."""
    require_rosbags()  # a missing [ros] extra is said, not raised as an ImportError
    from rosbags.rosbag2 import Reader

    by_topic = _by_topic(maps)
    store = typestore()
    counts: dict[str, int] = {}
    try:
        reader = Reader(bag)
        reader.open()
    except Exception as exc:  # rosbags raises its own types for a missing or broken bag
        raise Ros2Error(f"{bag}: cannot open ROS 2 bag: {exc}{_repair_hint(bag)}") from exc
    try:
        connections = [c for c in reader.connections if c.topic in by_topic]
        missing = sorted(set(by_topic) - {c.topic for c in connections})
        if missing:
            raise Ros2Error(
                f"{bag}: no topic {missing} (topics: {sorted({c.topic for c in reader.connections})})"
            )
        modality = {}
        for c in connections:
            where = f"topic {c.topic} ({c.msgtype})"
            wanted = by_topic[c.topic].modality or MODALITIES.get(c.msgtype)
            if wanted is None:
                known = ", ".join(sorted(MODALITIES))
                raise Ros2Error(f"{where}: type {c.msgtype} is not supported (the types imported: {known})")
            modality[c.topic] = wanted
        if "audio" not in modality.values():
            for option, value in (("--sample-rate", sample_rate), ("--channels", channels)):
                if value is not None:
                    kinds = ", ".join(f"{topic} is {kind}" for topic, kind in modality.items())
                    raise Ros2Error(f"{option} {value}: no mapped topic is audio ({kinds}); drop {option}")
        audio = {
            topic: topic_audio_format(_infos(reader, store, topic, bag), topic, sample_rate, channels)
            for topic, wanted in modality.items()
            if wanted == "audio"
        }
        # A bag's other topics are left by choice (--map names what to take); said, so that a topic
        # meant to be mapped and misspelt in spirit is seen. A mapped audio topic's AudioInfo is read.
        read = set(by_topic) | {topic + INFO_SUFFIX for topic in audio}
        if left := sorted({c.topic for c in reader.connections} - read):
            log.info("%s: topics not mapped, not imported: %s", bag, ", ".join(left))
        # PointCloud2 topics that are lidar so far: radar, by their first message's fields?
        clouds = {c.topic for c in connections if modality[c.topic] == MODALITIES.get(c.msgtype) == "lidar"}
        zero_stamps: Counter[TopicMap] = Counter()
        writer = LogWriter(out, metadata={"recorded_by": "fusion-pipeline import-ros2", "source": str(bag)})
        try:
            with writer:
                for connection, bag_ns, raw in _bag_messages(reader, connections, bag):
                    topic, msgtype = connection.topic, connection.msgtype
                    target, where = by_topic[topic], f"topic {topic} ({msgtype})"
                    msg = _deserialize(store, raw, msgtype, where)
                    if topic in clouds:
                        clouds.discard(topic)
                        _cloud_modality(target, radar_fields(msg), modality, where)
                    seq = counts.get(target.stream, 0)
                    if modality[topic] == "result" and msgtype == STRING:
                        arrays, meta, stamp, frame_id, seq = result_from_ros(msg, where)
                    else:
                        audio_format = audio.get(topic, AudioFormat(sample_rate, channels or 1))
                        arrays, meta, stamp, frame_id = from_ros(
                            msgtype, msg, modality[topic], where, audio_format
                        )
                        if stamp == 0:  # a header left unset, most likely
                            zero_stamps[target] += 1
                    sample = Sample(
                        target.stream,
                        modality[topic],
                        seq,
                        bag_ns if stamp is None else stamp,
                        arrays,
                        frame_id,
                        meta,
                    )
                    writer.write(sample, log_time_ns=bag_ns)
                    counts[target.stream] = counts.get(target.stream, 0) + 1
            if not counts:
                raise Ros2Error(f"{bag}: the topics mapped ({', '.join(sorted(by_topic))}) hold no message")
        except BaseException:
            for path in writer.paths:  # a half-converted log is no log: leave nothing behind
                path.unlink(missing_ok=True)
            raise
    finally:
        reader.close()
    for topic, target in sorted(by_topic.items()):
        if target.stream not in counts:
            log.warning("%s: topic %s holds no message: the log has no %s", out, topic, target.stream)
    for target, n in zero_stamps.items():
        log.warning(
            "%s: topic %s: %d of %d messages have a zero header stamp, kept as their stamp_ns (their log "
            "time is the bag's time)",
            out,
            target.topic,
            n,
            counts[target.stream],
        )
    return counts


def _cloud_modality(target: TopicMap, radar: list[str], modality: dict[str, str], where: str) -> None:
    """Set the modality of PointCloud2 topic `target`, so far lidar, from the radar-only fields (`radar`)
    of its first message: radar when it has them all and its map gives no modality (export-ros2 writes
    radar so); else they are dropped, which is said."""
    if target.modality is None and len(radar) == len(RADAR_ONLY_FIELDS):
        modality[target.topic] = "radar"
    elif radar:
        log.warning(
            "%s: PointCloud2 fields %s dropped: imported as lidar (x, y, z, intensity); "
            "--map %s=%s:radar keeps them",
            where,
            ", ".join(radar),
            target.topic,
            target.stream,
        )


def _infos(reader: Any, store: Any, topic: str, bag: Path) -> list[Any]:
    """The AudioInfo messages that describe audio `topic` (none when the bag has no such topic)."""
    infos = [c for c in reader.connections if c.topic == topic + INFO_SUFFIX and c.msgtype == AUDIO_INFO]
    if not infos:  # rosbags reads every connection when given none
        return []
    where = f"topic {topic}{INFO_SUFFIX} ({AUDIO_INFO})"
    return [_deserialize(store, raw, AUDIO_INFO, where) for _, _, raw in _bag_messages(reader, infos, bag)]


# -- export ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _private_bag(bag: Path) -> Iterator[Path]:
    """Where to write the bag `bag`: a path inside a fresh 0700 directory ``.NAME.*`` beside it, so that no
    one else can open its files while rosbags creates them with its own modes. On success the bag is
    narrowed to 0700 (files 0600, as every log) and renamed to `bag`: the name is taken only by a whole
    bag, and never over anything. On failure nothing is left behind (after SIGKILL, the ``.NAME.*``
    directory). A write that fails (a full disk) is a Ros2Error naming the bag."""
    if bag.exists() or bag.is_symlink():
        raise Ros2Error(f"{bag} exists already, not overwriting")
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{bag.name}.", dir=bag.parent))
    except OSError as exc:
        raise Ros2Error(f"{bag}: cannot create: {exc.strerror}") from exc
    try:
        built = staging / bag.name
        yield built
        for path in built.iterdir():
            path.chmod(stat.S_IMODE(path.stat().st_mode) & LOG_MODE)
        built.chmod(stat.S_IMODE(built.stat().st_mode) & 0o700)
        # rename(2) fails over a file or a non-empty directory; an empty directory made between this
        # check and the rename would be replaced, which loses nothing.
        if bag.exists() or bag.is_symlink():
            raise Ros2Error(f"{bag} appeared during the export, not overwriting it")
        try:
            os.rename(built, bag)
        except OSError as exc:
            if exc.errno in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR):
                raise Ros2Error(f"{bag} appeared during the export, not overwriting it") from exc
            raise
    except (OSError, sqlite3.Error) as exc:  # a full disk: OSError (mcap), sqlite3.OperationalError
        raise Ros2Error(f"{bag}: cannot write the bag: {getattr(exc, 'strerror', None) or exc}") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)


#: The channel metadata import-ros2 gives back: LogWriter's own keys, and an audio stream's sample rate,
#: which every message carries (its AudioInfo). The recording config's `rate_hz` and `offset_ms` have no
#: place in a bag's topic.
_CHANNEL_KEYS_MADE_AGAIN = {"modality", "frame_id", "wire_version", "sample_rate"}


def export_ros2(logs: Iterable[Path], bag: Path, *, storage: str = "sqlite3") -> dict[str, int]:
    """Write every log message a ROS 2 type exists for into a new rosbag2; return counts per topic.
    Topics follow `SourceTopics` (one per source); an audio topic gets its AudioInfo on TOPIC_info. What
    the bag does not carry (sets, and per topic what import-ros2 will not give back) is logged."""
    require_rosbags()  # a missing [ros] extra is said, not raised as an ImportError
    from rosbags.rosbag2 import StoragePlugin, Writer, WriterError

    plugin = {"sqlite3": StoragePlugin.SQLITE3, "mcap": StoragePlugin.MCAP}.get(storage)
    if plugin is None:
        raise Ros2Error(f"storage {storage!r}: choose sqlite3 or mcap")
    store = typestore()
    counts: dict[str, int] = {}
    skipped: dict[str, int] = {}
    notes: dict[str, set[str]] = {}
    infos: dict[str, AudioFormat] = {}
    odd_shapes: defaultdict[str, Counter[str]] = defaultdict(Counter)  # per topic, why
    exported: dict[tuple[str, str], str] = {}  # (source, stream) -> its topic, once a message is written
    logs = existing_logs(logs)
    topics = SourceTopics()
    with _private_bag(bag) as path:
        try:
            writer = Writer(path, version=8, storage_plugin=plugin)
        except WriterError as exc:
            raise Ros2Error(f"{bag}: {exc}") from exc
        connections: dict[tuple[str, str], Any] = {}

        def write(topic: str, msgtype: str, log_time_ns: int, msg: Any) -> None:
            if (topic, msgtype) not in connections:
                connections[topic, msgtype] = writer.add_connection(topic, msgtype, typestore=store)
            writer.write(connections[topic, msgtype], log_time_ns, store.serialize_cdr(msg, msgtype))

        with writer:
            readers = []  # each source's, for what they say of a log cut short
            for source, paths in log_sources(logs, joined=True).logs:
                reader = LogReader(paths)
                readers.append(reader)
                for message in reader:
                    sample = message.sample
                    odd = odd_shape(sample)
                    if odd is not None:
                        odd_shapes[topics.topic(sample.stream, source)][odd] += 1
                        continue
                    converted = to_ros(store, sample)
                    if converted is None:
                        skipped[sample.stream] = skipped.get(sample.stream, 0) + 1
                        continue
                    topic = topics.topic(sample.stream, source)
                    if sample.modality == "audio":
                        _, audio = sample_audio_format(sample)
                        if infos.get(topic) != audio:  # the first message, or a format change
                            infos[topic] = audio
                            write(
                                topic + INFO_SUFFIX,
                                AUDIO_INFO,
                                reader.timeline_ns(message),
                                audio_info(store, audio),
                            )
                        if audio.sample_rate is None:
                            notes.setdefault(topic, set()).add(
                                "no sample_rate in the log: import needs --sample-rate"
                            )
                    if sample.modality != "result":
                        notes.setdefault(topic, set()).update(losses(sample, counts.get(topic, 0)))
                    write(topic, converted[0], reader.timeline_ns(message), converted[1])
                    counts[topic] = counts.get(topic, 0) + 1
                    exported[source, sample.stream] = topic
                for stream, channel in reader.streams.items():
                    topic = exported.get((source, stream))
                    if topic is not None and (lost := sorted(set(channel) - _CHANNEL_KEYS_MADE_AGAIN)):
                        notes.setdefault(topic, set()).add(f"channel metadata {lost} not carried")
    say_cut_short([p for r in readers for p in r.truncated], f"{bag} holds the messages before it")
    if any(REPORT_METADATA in r.metadata for r in readers):
        log.warning(
            "%s: the recorder's report (%s metadata, its counters) is not carried", bag, REPORT_METADATA
        )
    for line in topics.renamed:
        log.warning("%s: %s", bag, line)
    for topic, reasons in odd_shapes.items():
        notes.setdefault(topic, set()).update(f"{n} messages skipped: {why}" for why, n in reasons.items())
    for topic, lost in sorted(notes.items()):
        if lost:
            log.warning("%s: %s: %s", bag, topic, "; ".join(sorted(lost)))
    if skipped:
        log.warning(
            "%s: not exported (no ROS 2 type: sets, and generic streams but an IMU's 6 values): %s",
            bag,
            skipped,
        )
    return counts
