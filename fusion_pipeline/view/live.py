"""The viewer live: its subscriptions to a running graph, drained without ever slowing it, and every
place the views go opened and closed together. Sockets here; the views themselves are `scene.Scene`.

The viewer subscribes to the drivers' endpoints (the raw sensor messages) and the results, on real-time
sockets: a publisher never waits for it. Each pass drains both sockets and `drain.DrainTally` keeps the
newest message per discrete stream (at most `ViewSettings.max_hz` of them a second), every audio chunk and
every result, counting the rest (and, per stream, what Foxglove has no schema for: `foxglove_no_schema`);
`summary` words the counts. `Views` discards its .rrd when a later output fails to start.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import zmq

from fusion_pipeline.config import Config
from fusion_pipeline.logs.recorder import union_limits
from fusion_pipeline.protocol import RESULT_STREAM
from fusion_pipeline.transport import Role
from fusion_pipeline.transport.sockets import Subscriber
from fusion_pipeline.transport.wire import Sample
from fusion_pipeline.view.drain import DrainTally
from fusion_pipeline.view.foxglove_live import FoxgloveLive
from fusion_pipeline.view.scene import Scene, blueprint
from fusion_pipeline.view.sinks import RerunOutput, ViewSettings

__all__ = ["MAX_DRAIN", "LiveView", "Views", "open_sources", "summary"]

log = logging.getLogger(__name__)

MAX_DRAIN = 1000  # messages taken off one socket in one pass, so a flood cannot hold the loop


class Views:
    """Rerun (a file, the web viewer or the native one) and Foxglove, as `settings` asks; `show` sends a
    message to each. `log_time`: messages from a log (`scene.Scene`)."""

    def __init__(self, config: Config, settings: ViewSettings, *, log_time: bool = False) -> None:
        self.settings = settings
        self.rerun: RerunOutput | None = None
        self.scene: Scene | None = None
        self.foxglove: FoxgloveLive | None = None
        try:
            if settings.save or settings.web or settings.native:
                self.rerun = RerunOutput(settings, blueprint(config))
                self.scene = Scene(config, self.rerun.recording, log_time=log_time)
            if settings.foxglove:
                self.foxglove = FoxgloveLive(settings.foxglove_port)
        except BaseException:
            self.close(discard=True)  # a failed start shows nothing: no .rrd of it under the name
            raise

    def served(self) -> list[str]:
        """Where a viewer connects, in words ("web viewer: URL", "Foxglove WebSocket: URL"), for the
        command to print and the node to log."""
        served = []
        if self.rerun is not None and self.rerun.web_url:
            served.append(f"web viewer: {self.rerun.web_url}")
        if self.foxglove is not None:
            served.append(f"Foxglove WebSocket: {self.foxglove.url}")
        return served

    def show(self, sample: Sample, received_ns: int) -> None:
        if self.scene is not None:
            self.scene.show(sample, received_ns)
        if self.foxglove is not None:
            self.foxglove.show(sample, received_ns)

    def close(self, discard: bool = False) -> Path | None:
        """Close every output; the .rrd written, if any (none with `discard`, `RerunOutput.close`)."""
        if self.foxglove is not None:
            self.foxglove.close()
        return self.rerun.close(discard) if self.rerun is not None else None


def open_sources(
    subscriber: Callable[..., Subscriber], config: Config, run_dir: Path | None, endpoint: str = ""
) -> list[Subscriber]:
    """The viewer's sockets, made by `subscriber(urls, topics=..., **options)` (`node.Node.subscriber`,
    which adds the config's CURVE keys): the config's driver endpoints and results in `run_dir`, or
    everything on one `endpoint`."""
    limits = union_limits(config)
    if endpoint:
        return [subscriber([endpoint], topics=[""], limits=limits)]
    assert run_dir is not None
    sensors = sorted({config.endpoint(s.endpoint, run_dir) for s in config.streams})
    results = config.local_results_endpoint(run_dir)  # this host's: on tcp, its CURVE key is not the peer's
    return [
        subscriber(sensors, topics=[s.name for s in config.streams], limits=limits, exact=True),
        subscriber([results], topics=[RESULT_STREAM], role=Role.RESULT),
    ]


class LiveView:
    """One pass of the viewer's loop (`poll`): wait for any of `sources`, drain them all, show what
    `DrainTally` keeps. `clock` gives the receive time (wall clock)."""

    def __init__(
        self, sources: Sequence[Subscriber], views: Views, clock: Callable[[], int] = time.time_ns
    ) -> None:
        self.sources = list(sources)
        self.views = views
        self.clock = clock
        self.tally = DrainTally(views.settings.max_hz)
        self._poller = zmq.Poller()
        for source in self.sources:
            self._poller.register(source.socket, zmq.POLLIN)

    def poll(self, timeout_ms: int) -> int:
        """Show what arrived within `timeout_ms`; how many messages were shown."""
        for source in self.sources:
            source.check_connections()  # this loop polls the sockets itself
        if not self._poller.poll(timeout_ms):
            return 0
        drained: list[Sample] = []
        for source in self.sources:
            for _ in range(MAX_DRAIN):
                sample = source.recv(timeout_ms=0)
                if sample is None:
                    break
                drained.append(sample)
        received_ns = self.clock()
        kept = self.tally.keep(drained)
        for sample in kept:
            self.views.show(sample, received_ns)
        if kept and self.views.scene is not None:
            self.views.scene.counters(self.tally)
        return len(kept)

    def malformed(self) -> Counter[str]:
        """The messages the sources dropped as malformed, per reason."""
        return sum((source.malformed for source in self.sources), Counter())

    def counters(self) -> dict[str, Any]:
        """`DrainTally.counters`, the malformed messages per reason, and per stream the messages shown
        that Foxglove got nothing of (`STREAM.foxglove_no_schema`: audio has no Foxglove schema)."""
        out: dict[str, Any] = self.tally.counters()
        out |= {f"malformed_{reason}": n for reason, n in self.malformed().items()}
        if self.views.foxglove is not None:
            for stream, n in self.views.foxglove.no_schema.items():
                out[f"{stream}.foxglove_no_schema"] = n
        return out


def summary(counters: dict[str, Any], separator: str = "\n  ") -> str:
    """`LiveView.counters` for people: the totals, then a part per stream, joined by `separator` (one
    line per stream by default; "; " for a log line)."""
    streams = sorted({key.rsplit(".", 1)[0] for key in counters if "." in key})
    parts = [f"viewer: received {counters.get('received', 0)}, skipped {counters.get('skipped', 0)}"]
    for name in streams:
        part = (
            f"{name}: shown {counters.get(f'{name}.shown', 0)} of {counters.get(f'{name}.received', 0)}, "
            f"skipped {counters.get(f'{name}.skipped', 0)}, lost upstream {counters.get(f'{name}.lost', 0)}"
        )
        if counters.get(f"{name}.foxglove_no_schema"):
            part += f", not sent to Foxglove {counters[f'{name}.foxglove_no_schema']} (no Foxglove schema)"
        parts.append(part)
    return separator.join(parts)
