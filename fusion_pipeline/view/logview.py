"""The views of a recording: every message of the logs, on the log's capture timeline, so the viewer's
time slider scrubs through it (a recording and its replay's ``--results`` together)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from fusion_pipeline.logs.reader import LogReader, existing_logs, say_cut_short
from fusion_pipeline.logs.sources import log_sources
from fusion_pipeline.view.live import Views

__all__ = ["show_log"]


def show_log(paths: Iterable[Path], views: Views) -> Counter[str]:
    """Show every message of `paths` (split parts as one recording); the count per stream."""
    counts: Counter[str] = Counter()
    for _, parts in log_sources(existing_logs(paths), joined=True):
        reader = LogReader(parts)
        for message in reader:
            views.show(message.sample, message.log_time_ns)
            counts[message.sample.stream] += 1
        say_cut_short(reader.truncated, "showing the messages before it")  # a damaged log is looked at
    return counts
