"""The views of a recording: every message of the logs, on the log's capture timeline, so the viewer's
time slider scrubs through it (a recording and its replay's ``--results`` together)."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from fusion_pipeline.logs.reader import LogReader, existing_logs, say_cut_short
from fusion_pipeline.logs.sources import SourceTopics, log_sources
from fusion_pipeline.view.live import Views

__all__ = ["show_log"]

log = logging.getLogger(__name__)


def show_log(paths: Iterable[Path], views: Views) -> tuple[Counter[str], list[str]]:
    """Show every message of `paths` (split parts as one recording); the count per stream, named as
    export-foxglove names its topics: a stream a later log holds too as STREAM@LOG (a recording's
    results and its replay's). The views show such a stream as one series: said in a warning. Also
    the logs found cut short (`LogReader.truncated`), their messages before the cut shown."""
    counts: Counter[str] = Counter()
    cut_short: list[str] = []
    topics = SourceTopics()
    for source, parts in log_sources(existing_logs(paths), joined=True).logs:
        reader = LogReader(parts)
        for message in reader:
            views.show(message.sample, message.log_time_ns)
            counts[topics.topic(message.sample.stream, source).removeprefix("/")] += 1
        say_cut_short(reader.truncated, "showing the messages before it")  # a damaged log is looked at
        cut_short += reader.truncated
    for renamed in topics.renamed:
        log.warning(
            "%s: shown in the same views as the first log's (view the logs one at a time to tell "
            "them apart); counted apart",
            renamed,
        )
    return counts, cut_short
