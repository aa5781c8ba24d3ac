"""The supervisor's output: its own and its nodes' log lines, and a status line about once a second.

On a terminal the status line is redrawn in place on the last line, and a log line first clears it. Into
a pipe or journald it is a plain ``[status]`` line every STATUS_PLAIN_S, the first only once a result has
come (a log gets no line of zeros while the nodes start), and the nodes' output loses its ANSI colours.
"""

from __future__ import annotations

import re
import threading
from typing import TextIO

from fusion_pipeline.ops.health import PipelineSnapshot, status_tags
from fusion_pipeline.ops.metrics import ResultStats

__all__ = ["STATUS_PLAIN_S", "StatusLine"]

STATUS_PLAIN_S = 10.0  # status line period when the output is not a terminal
_ANSI_COLOUR = re.compile(r"\x1b\[[0-9;]*m")
_CLEAR = "\r\x1b[K"  # back to the line's start, erase it


def _labels(streams: list[str]) -> dict[str, str]:
    """Short names for the status line: a stream's first path part ("camera" for camera/front), or its
    whole name where several streams share that part (a surround suite's six cameras)."""
    first = [name.split("/")[0] for name in streams]
    return {
        name: short if first.count(short) == 1 else name for name, short in zip(streams, first, strict=True)
    }


class StatusLine:
    """Writes every line to `out`; the node reader threads and the supervisor's loop share it."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.tty = out.isatty()
        self._lock = threading.Lock()
        self._shown = False  # a status line stands on the terminal's last line
        self._next = 0.0  # monotonic: when the next status line is due
        self._base: tuple[float, dict[str, int]] = (0.0, {})  # (when, counts) the rates are measured from

    def log(self, line: str, prefix: str = "supervisor") -> None:
        with self._lock:
            if self._shown:
                self.out.write(_CLEAR)
                self._shown = False
            self.out.write(f"[{prefix}] {line}\n")
            self.out.flush()

    def node_output(self, name: str, raw: bytes) -> None:
        """One line a node printed, logged under its name."""
        # A node's own log lines start with its name too (for running it alone): say it once.
        line = raw.decode(errors="replace").rstrip("\n").removeprefix(f"{name}: ")
        if not self.tty:  # onnxruntime colours its log even into a pipe; journald shows the codes raw
            line = _ANSI_COLOUR.sub("", line)
        self.log(line, prefix=name)

    def start(self, now: float, produced: dict[str, int]) -> None:
        """The first status line is due a second after `now` (monotonic), with rates from `produced`."""
        self._next = now + 1.0
        self._base = (now, produced)

    def due(self, now: float) -> bool:
        return now >= self._next

    def update(
        self,
        now: float,
        produced: dict[str, int],
        stats: ResultStats,
        restarts: int,
        latest: PipelineSnapshot | None,
    ) -> None:
        """Show the status line: per-stream rates of `produced` (messages by stream) since the last one,
        the sets, latency, provider, restarts and the tags of the `latest` snapshot."""
        waiting = not self.tty and not stats.results
        if not waiting:
            dt = max(1e-3, now - self._base[0])
            labels = _labels(list(produced))
            rates = " ".join(
                f"{labels[name]} {(n - self._base[1].get(name, 0)) / dt:4.1f}Hz"
                for name, n in produced.items()
            )
            self._show(" | ".join([rates, *_fields(stats, restarts, latest)]))
        self._base = (now, produced)
        self._next = now + (1.0 if self.tty or waiting else STATUS_PLAIN_S)

    def clear(self) -> None:
        """Take a status line off the terminal (before the summary)."""
        with self._lock:
            if self._shown:
                self.out.write(_CLEAR)
                self.out.flush()
                self._shown = False

    def _show(self, line: str) -> None:
        with self._lock:
            if self.tty:
                self.out.write(f"{_CLEAR}{line}")
                self._shown = True
            else:
                self.out.write(f"[status] {line}\n")
            self.out.flush()


def _fields(stats: ResultStats, restarts: int, latest: PipelineSnapshot | None) -> list[str]:
    """The status line after the rates."""
    model, e2e = stats.recent_ms()
    if model is None:
        latency = "no results yet"
    else:
        latency = f"model {model:.1f}ms" + ("" if e2e is None else f" e2e {e2e:.1f}ms")
    tags = status_tags(latest) if latest is not None else []
    return [
        f"sets full {stats.full} partial {stats.partial}",
        latency,
        stats.provider or "-",
        f"restarts {restarts}",
        *tags,
    ]
