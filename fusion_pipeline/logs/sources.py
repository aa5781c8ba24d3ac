"""The inputs of an export: logs grouped by recording (`log_sources`) and named as topics (`SourceTopics`)."""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from pathlib import Path

from fusion_pipeline.logs.writer import part_path

__all__ = ["SourceTopics", "log_sources"]


def log_sources(paths: Sequence[Path]) -> list[tuple[str, list[Path]]]:
    """The inputs of an export grouped by recording, in order: consecutive parts of a split recording
    (``NAME_000.mcap``, ``NAME_001.mcap``, ...) are one source named NAME, any other file a source named
    by its stem; a name that comes twice gets ``-2``, ``-3``, ... ."""
    sources: list[tuple[str, list[Path]]] = []
    for path in paths:
        match = re.fullmatch(r"(.+)_(\d{3})", path.stem)
        base = match[1] if match else path.stem
        index = int(match[2]) if match else 0
        if (
            index
            and sources
            and sources[-1][1][-1] == part_path(path.with_name(base + path.suffix), index - 1)
        ):
            sources[-1][1].append(path)
            continue
        name = base if index == 0 else path.stem
        taken = {n for n, _ in sources}
        unique = next(c for c in (name, *(f"{name}-{n}" for n in range(2, len(paths) + 2))) if c not in taken)
        sources.append((unique, [path]))
    return sources


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
