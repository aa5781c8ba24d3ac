"""The inputs of an export, a batch or a view: logs grouped by recording (`log_sources`) and named as
topics (`SourceTopics`)."""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fusion_pipeline.logs.reader import next_part, recording_id
from fusion_pipeline.logs.writer import part_path

__all__ = ["LogSources", "SourceTopics", "log_sources"]

log = logging.getLogger(__name__)

_PART = re.compile(r"(.+)_(\d{3})")  # the stem of part N of a split recording: NAME_NNN


@dataclass
class LogSources:
    """What `log_sources` made of its inputs."""

    #: (name, its files in part order) per source, in the order first given.
    logs: list[tuple[str, list[Path]]] = field(default_factory=list)
    #: The parts of split recordings that are not given, as warned of ("run_001.mcap", "run_003.mcap to
    #: run_004.mcap"): for a report that scripts read (the warnings go to stderr).
    parts_not_given: list[str] = field(default_factory=list)


def log_sources(paths: Sequence[Path], joined: bool = False) -> LogSources:
    """The inputs grouped by recording, in the order first given: the parts of a split recording
    (``NAME_000.mcap``, ``NAME_001.mcap``, ..., given in any order) are one source named NAME, in part
    order; any other file is a source named by its stem. Where parts are missing (a gap, a recording's
    later parts alone, or its last parts: a split part names the part that follows it) a warning names
    them, and the parts given stay one source, read on after the gap, when `joined` (a replay, a viewer,
    an export: one recording, one topic per stream);
    else a part whose predecessor is not given starts a source of its own named by its stem (a batch,
    whose results are named per log). A name that comes twice gets ``-2``, ``-3``, ... ."""
    found = LogSources()

    def unique(name: str) -> str:
        taken = {n for n, _ in found.logs}
        return next(c for c in (name, *(f"{name}-{n}" for n in range(2, len(paths) + 2))) if c not in taken)

    for recording, files in _recordings(paths):
        runs = _runs(recording, files, joined)
        found.parts_not_given += [missing for missing, _ in runs if missing]
        last = runs[-1][1][-1]
        if following := next_part(last):  # a path beside `last`
            log.warning("%s not given: %s goes on in it; the later parts are not read", following, last.name)
            found.parts_not_given.append(str(following))
        if joined:
            for missing, run in runs:
                if missing:
                    name, after = recording.stem, run[0].name
                    log.warning("%s not given: %s is read on from %s after a gap", missing, name, after)
            found.logs.append((unique(recording.stem), [path for _, run in runs for path in run]))
            continue
        for missing, run in runs:
            name = unique(recording.stem if _part_index(run[0]) == 0 else run[0].stem)
            if missing:
                log.warning(
                    "%s not given: the parts of %s from %s on are a log of their own, %r",
                    missing,
                    recording.stem,
                    run[0].name,
                    name,
                )
            found.logs.append((name, run))
    return found


def _recordings(paths: Sequence[Path]) -> list[tuple[Path, list[Path]]]:
    """(recording, its files given), in the order first given: a split recording is its unsplit path and
    its parts, any other file itself."""
    recordings: list[tuple[Path, list[Path]]] = []
    parts: dict[Path, list[Path]] = {}  # a split recording (its unsplit path) -> its parts given
    for path in paths:
        match = _PART.fullmatch(path.stem)
        if match is None:
            recordings.append((path, [path]))
            continue
        recording = path.with_name(match[1] + path.suffix)
        if recording not in parts:
            parts[recording] = []
            recordings.append((recording, parts[recording]))
        parts[recording].append(path)
    return recordings


def _part_index(path: Path) -> int:
    """The part number of a split recording's part; 0 for any other file (a recording of one file)."""
    match = _PART.fullmatch(path.stem)
    return int(match[2]) if match else 0


def _runs(recording: Path, files: list[Path], joined: bool) -> list[tuple[str, list[Path]]]:
    """The files of one recording in part order, as runs of consecutive parts, each with the parts
    missing before it ("" when none are). A part whose metadata names another recording than the part
    before it (two recordings named as one's parts) starts a run of its own, said in a warning."""
    runs: list[tuple[str, list[Path]]] = []
    ids = {path: recording_id(path) for path in files} if len(files) > 1 else {}  # each file's, once
    expected = 0  # the part that continues the last run
    for path in sorted(files, key=_part_index):
        index = _part_index(path)
        if runs and index == expected and not _another_recording(runs[-1][1][-1], path, ids, joined):
            runs[-1][1].append(path)
        else:  # a gap, the first part, or a part given twice (it starts a run again: nothing dropped)
            missing = ""
            if index > expected:
                last = "" if index == expected + 1 else f" to {part_path(recording, index - 1).name}"
                missing = f"{part_path(recording, expected)}{last}"
            runs.append((missing, [path]))
        expected = index + 1
    return runs


def _another_recording(before: Path, path: Path, ids: dict[Path, str | None], joined: bool) -> bool:
    """Whether `path`, named as the part after `before`, is of another recording (their writer's `ids`
    differ), which is said; unknown ids (another writer's files) are taken as one recording."""
    if None in (ids[before], ids[path]) or ids[before] == ids[path]:
        return False
    log.warning(
        "%s is named as the part after %s but is another recording (the ids in their metadata differ): %s",
        path.name,
        before.name,
        "read on after it, as given" if joined else f"run as a log of its own, {path.stem!r}",
    )
    return True


class SourceTopics:
    """Topic names of an export: ``/STREAM`` for the first source that holds the stream, and
    ``/STREAM@SOURCE`` for the same stream in a later source (the live results of a recording and the
    replayed ones of its ``--results`` log, say), so that no topic merges two sources. A topic is owned
    by one (source, stream): where that name is taken already (a stream literally named
    ``result/fused@b``, say) the next free ``/STREAM@SOURCE#2``, ``#3``, ... is used instead."""

    def __init__(self) -> None:
        self._owners: dict[str, tuple[str, str]] = {}  # topic -> the (source, stream) it holds
        self._topics: dict[tuple[str, str], str] = {}  # (source, stream) -> its topic
        #: "STREAM of SOURCE -> TOPIC (...)" for every stream that did not get its plain topic.
        self.renamed: list[str] = []

    def topic(self, stream: str, source: str) -> str:
        key = (source, stream)
        if key in self._topics:
            return self._topics[key]
        plain = "/" + stream
        renamed = f"{plain}@{source}"
        taken: list[str] = []
        for topic in itertools.chain((plain, renamed), (f"{renamed}#{n}" for n in itertools.count(2))):
            if topic not in self._owners:
                break
            taken.append(topic)
        self._owners[topic] = key
        self._topics[key] = topic
        if taken:  # say whose each skipped name is: the same stream of another source, or another stream
            whose = [
                f"{t} holds {owner}'s" + ("" if held == stream else f" {held}")
                for t in taken
                for owner, held in [self._owners[t]]
            ]
            self.renamed.append(f"{stream} of {source} -> {topic} ({'; '.join(whose)})")
        return topic
