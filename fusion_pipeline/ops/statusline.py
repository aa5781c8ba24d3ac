"""The supervisor's output: its own and its nodes' log lines, and a status line about once a second.

On a terminal the status line is redrawn in place on the last line, and a log line first clears it; it
is kept to the terminal's width (a line that wraps cannot be redrawn in place): many streams of one kind
are shown as one, their count and their range of rates; then the fields least telling on a terminal
(the provider, restarts, latency) give way, and the rates are cut; the tags (what is wrong) are kept.
Into a pipe or journald it is a plain ``[status]`` line every STATUS_PLAIN_S, whole, the first
FIRST_RATES_S after the first result (a log gets no line of zeros while the nodes start), and the nodes'
output loses its ANSI colours.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable
from typing import TextIO

from fusion_pipeline.ops.health import PipelineSnapshot, status_tags
from fusion_pipeline.ops.metrics import ResultStats

__all__ = ["FIRST_RATES_S", "STATUS_PLAIN_S", "StatusLine"]

STATUS_PLAIN_S = 10.0  # status line period when the output is not a terminal
FIRST_RATES_S = 2.0  # the first such line's rates: several heartbeats of every node (500 ms by default)
_ANSI_COLOUR = re.compile(r"\x1b\[[0-9;]*m")
_CLEAR = "\r\x1b[K"  # back to the line's start, erase it


def _labels(streams: list[str]) -> dict[str, str]:
    """Short names for the status line: a stream's first path part ("camera" for camera/front), or its
    whole name where several streams share that part (a surround suite's six cameras)."""
    first = [name.split("/")[0] for name in streams]
    return {
        name: short if first.count(short) == 1 else name for name, short in zip(streams, first, strict=True)
    }


def _rates(rates: dict[str, float], grouped: bool) -> str:
    """Each stream's rate; `grouped`: one entry per first path part, "camera x6 29.8-30.1Hz"."""
    if not grouped:
        labels = _labels(list(rates))
        return " ".join(f"{labels[name]} {hz:4.1f}Hz" for name, hz in rates.items())
    groups: dict[str, list[float]] = {}
    for name, hz in rates.items():
        groups.setdefault(name.split("/")[0], []).append(hz)
    return " ".join(
        f"{kind} {hzs[0]:4.1f}Hz" if len(hzs) == 1 else f"{kind} x{len(hzs)} {min(hzs):.1f}-{max(hzs):.1f}Hz"
        for kind, hzs in groups.items()
    )


def _terminal_width(out: TextIO) -> int:
    try:
        return os.get_terminal_size(out.fileno()).columns
    except (AttributeError, OSError, ValueError):  # not a real terminal's file (a test's stand-in)
        return 80


class StatusLine:
    """Writes every line to `out`; the node reader threads and the supervisor's loop share it. `width`
    gives the terminal's columns (asked of `out` at each line when not given: a terminal is resized)."""

    def __init__(self, out: TextIO, width: Callable[[], int] | None = None) -> None:
        self.out = out
        self.tty = out.isatty()
        self._width = width or (lambda: _terminal_width(out))
        self._lock = threading.Lock()
        self._shown = False  # a status line stands on the terminal's last line
        self._next = 0.0  # monotonic: when the next status line is due
        self._base: tuple[float, dict[str, int]] = (0.0, {})  # (when, counts) the rates are measured from
        self._counting = False  # in a log: results have come, the lines' rates are being measured

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
        if not self.tty and stats.results and not self._counting:
            # A log's first line: its rates over FIRST_RATES_S from the first result (the second before
            # may hold no heartbeat of a node on a busy machine, and 0.0 Hz would stand for 10 s).
            self._counting = True
            self._base, self._next = (now, produced), now + FIRST_RATES_S
            return
        if not waiting:
            dt = max(1e-3, now - self._base[0])
            rates = {name: (n - self._base[1].get(name, 0)) / dt for name, n in produced.items()}
            fields = _fields(stats, restarts)
            tags = status_tags(latest) if latest is not None else []
            line = " | ".join([_rates(rates, grouped=False), *fields.values(), *tags])
            if self.tty and 0 < (width := self._width()) <= len(line):  # 0: a pty that gave no size
                line = _fit(_rates(rates, grouped=True), fields, tags, width - 1)  # the cursor's column free
            self._show(line)
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


#: The status line's fields a narrow terminal loses first, while the rates would get fewer columns than
#: MIN_RATES: the provider (said at start), the restarts, the latency, the sets. The tags (what is wrong)
#: are always kept.
_DROPPED_FIRST = ("provider", "restarts", "latency", "sets")
MIN_RATES = 24  # "camera x6 29.8-30.1Hz lid"


def _fields(stats: ResultStats, restarts: int) -> dict[str, str]:
    """The status line after the rates and before the tags, by name, in the order shown."""
    model, e2e = stats.recent_ms()
    if model is None:
        latency = "no results yet"
    else:
        latency = f"model {model:.1f}ms" + ("" if e2e is None else f" e2e {e2e:.1f}ms")
    return {
        "sets": f"sets full {stats.full} partial {stats.partial}",
        "latency": latency,
        "provider": stats.provider or "-",
        "restarts": f"restarts {restarts}",
    }


def _fit(rates: str, fields: dict[str, str], tags: list[str], limit: int) -> str:
    """The status line in `limit` columns: the tags whole, the fields `_DROPPED_FIRST` leaves, the
    rates cut to what is left (tags wider than the terminal alone: cut too, still one line)."""
    kept = dict(fields)
    for name in _DROPPED_FIRST:
        if limit - len(" | ".join([*kept.values(), *tags])) - 3 >= min(len(rates), MIN_RATES):
            break
        del kept[name]
    tail = " | ".join([*kept.values(), *tags])
    room = limit - len(tail) - 3
    if room < 2:
        return tail[:limit]
    return f"{rates if len(rates) <= room else rates[: room - 1] + '…'} | {tail}"
