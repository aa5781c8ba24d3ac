"""`echo`, `hz` and `topics`: look at any wire v1 endpoint, like `ros2 topic echo/hz/bw/list`."""

from __future__ import annotations

import argparse
import json
import stat
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fusion_pipeline.cli.args import add_command, config_argument, number
from fusion_pipeline.config import load_security
from fusion_pipeline.protocol import Endpoint
from fusion_pipeline.transport.sockets import Subscriber, ipc_probe
from fusion_pipeline.transport.wire import DEFAULT_LIMITS, Sample

__all__ = ["StreamRate", "describe_sample", "register"]


ENDPOINT_HELP = "ipc:///path or tcp://host:port of a publisher (a driver, an ingest node, sets, results)"
CONFIG_HELP = (
    "a tcp endpoint with CURVE: connect with this config's [security] keys (a pipeline config, or a file "
    "of a [security] section alone)"
)
#: echo and topics on an ipc endpoint nobody can be publishing on yet: said at once, then they listen
#: anyway, as `ros2 topic echo` waits for a topic to appear.
IPC_NOTE = (
    " An ipc socket file that is missing, or that nothing listens on, is reported on stderr at once; "
    "the command listens anyway, so a publisher that binds it later is picked up."
)
SECONDS = number(0.001)


def register(sub: argparse._SubParsersAction) -> None:
    echo = add_command(sub, "echo", _echo, note=IPC_NOTE)
    echo.add_argument("endpoint", help=ENDPOINT_HELP)
    echo.add_argument("--stream", default="", help="only streams whose name starts with PREFIX")
    echo.add_argument("--count", type=number(1, int), default=None, help="exit 0 after N messages")
    echo.add_argument("--json", action="store_true", help="one JSON object per line")
    echo.add_argument(
        "--timeout",
        type=SECONDS,
        default=None,
        help="exit 1 when no message arrives for S s (default: listen until Ctrl-C)",
    )
    config_argument(echo, help=CONFIG_HELP)

    hz = add_command(sub, "hz", _hz)
    hz.add_argument("endpoint", help=ENDPOINT_HELP)
    hz.add_argument("--stream", default="", help="only streams whose name starts with PREFIX")
    hz.add_argument(
        "--window",
        type=number(2, int),
        default=100,
        help="messages per stream in the window (%(default)s)",
    )
    hz.add_argument("--duration", type=SECONDS, default=None, help="stop after S seconds (default: Ctrl-C)")
    config_argument(hz, help=CONFIG_HELP)

    topics = add_command(sub, "topics", _topics, note=IPC_NOTE)
    topics.add_argument("endpoint", help=ENDPOINT_HELP)
    topics.add_argument("--duration", type=SECONDS, default=2.0, help="listen for S seconds (%(default)s)")
    config_argument(topics, help=CONFIG_HELP)


def _ipc_problem(endpoint: str) -> str:
    """Why nothing can arrive on an ipc endpoint ('' when its socket file is there, and for tcp):
    connecting to a missing file is legal in ZeroMQ (it waits for a bind), so silence alone says nothing."""
    if not endpoint.startswith("ipc://"):
        return ""
    path = Path(endpoint.removeprefix("ipc://"))
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        missing = path if path.parent.is_dir() else path.parent
        return f"{missing} does not exist: no publisher has bound {endpoint} (is it running? this run dir?)"
    except OSError as exc:
        return f"{path}: {exc.strerror}"
    return _listener_problem(path) if stat.S_ISSOCK(mode) else f"{path} is not a socket file"


def _listener_problem(path: Path) -> str:
    """'' when something listens on the socket file `path`: a publisher killed before it could unlink its
    socket leaves the file behind, and only connect(2) tells that file from a live one."""
    error = ipc_probe(path)
    if isinstance(error, ConnectionRefusedError):
        return f"{path}: nothing listens on it (a socket left behind by a process that exited?)"
    if isinstance(error, PermissionError):
        return f"{path}: {error.strerror}"
    return ""  # it listens, or what else connect says (a socket of another type) is nothing to act on


def _warn_at_start(command: str, endpoint: str) -> None:
    """What stands in the way on an ipc endpoint, said before listening (see IPC_NOTE)."""
    problem = _ipc_problem(endpoint)
    if problem:
        print(
            f"fusion-pipeline {command}: {problem}; listening anyway, for a publisher that binds it later",
            file=sys.stderr,
            flush=True,
        )


def _no_message(command: str, args: argparse.Namespace, seconds: float, sub: Subscriber) -> None:
    """Say that nothing came, and why where it is known: an ipc socket file missing or deaf, or what the
    subscriber last saw go wrong (a refused CURVE key, malformed messages)."""
    prefix = getattr(args, "stream", "")
    only = f" from streams {prefix!r}*" if prefix else ""
    problem = _ipc_problem(args.endpoint) or sub.last_error
    if problem and args.config is None and args.endpoint.startswith("tcp://"):
        problem += " (-c CONFIG connects with that config's CURVE keys)"
    print(
        f"fusion-pipeline {command}: no message on {args.endpoint}{only} within {seconds:.3g} s"
        + (f": {problem}" if problem else ""),
        file=sys.stderr,
    )


#: Arrays this small (a result's class probabilities, position, presence mask) are shown in full.
SHOWN_VALUES = 16


def describe_sample(sample: Sample) -> dict[str, Any]:
    """Header fields plus dtype, shape and min/max/mean of each array (and the values of a small one),
    as plain JSON-able values."""
    arrays = {}
    for name, array in sample.arrays.items():
        info: dict[str, Any] = {"dtype": array.dtype.str, "shape": list(array.shape)}
        if array.size:
            info.update(
                min=float(array.min()), max=float(array.max()), mean=float(array.mean(dtype=np.float64))
            )
        if 0 < array.size <= SHOWN_VALUES:
            info["values"] = array.ravel().tolist()
        arrays[name] = info
    return {**sample.header_fields(), "arrays": arrays}


def _format_line(info: dict[str, Any]) -> str:
    parts = [f"{info['stream']} [{info['modality']}] seq={info['seq']} stamp_ns={info['stamp_ns']}"]
    if info["frame_id"]:
        parts.append(f"frame_id={info['frame_id']}")
    if info["meta"]:
        parts.append(f"meta={json.dumps(info['meta'], default=str)}")
    for name, a in info["arrays"].items():
        shape = "x".join(map(str, a["shape"])) or "scalar"
        if "values" in a:
            stats = " [" + " ".join(f"{v:.4g}" for v in a["values"]) + "]"
        else:
            stats = f" min={a['min']:.4g} max={a['max']:.4g} mean={a['mean']:.4g}" if "min" in a else ""
        parts.append(f"{name}:{a['dtype']}[{shape}]{stats}")
    return " ".join(parts)


def _subscribe(args: argparse.Namespace, prefix: str) -> Subscriber:
    # Read whenever given (a mistake in it is said); its CURVE keys apply to a tcp endpoint only.
    security = None if args.config is None else load_security(args.config)
    curve = security.curve() if security is not None and Endpoint(args.endpoint).scheme == "tcp" else None
    # Introspection must see anything a sensor may legally send, so it uses the protocol's limits.
    return Subscriber(args.endpoint, topics=[prefix], limits=DEFAULT_LIMITS, hwm=1000, curve=curve)


def _echo(args: argparse.Namespace) -> int:
    """print the messages published on an endpoint

    One line per message: header fields and each array's dtype, shape and min/max/mean (its values when
    it holds 16 or fewer).
    """
    timeout_ms = None if args.timeout is None else int(args.timeout * 1000)
    with _subscribe(args, args.stream) as sub:  # the endpoint is checked first
        _warn_at_start("echo", args.endpoint)  # with no --timeout, the only word until a message comes
        printed = 0
        while args.count is None or printed < args.count:
            sample = sub.recv(timeout_ms)
            if sample is None:
                _no_message("echo", args, args.timeout, sub)
                return 1
            info = describe_sample(sample)
            print(json.dumps(info, default=str) if args.json else _format_line(info), flush=True)
            printed += 1
        if sub.malformed:
            print(
                f"fusion-pipeline echo: dropped malformed messages: {dict(sub.malformed)} "
                f"(last: {sub.last_error})",
                file=sys.stderr,
            )
    return 0


@dataclass
class StreamRate:
    """Rolling per-stream receive statistics over the last `window` messages."""

    window: int
    modality: str = ""
    count: int = 0
    times: deque[float] = field(default_factory=deque)
    sizes: deque[int] = field(default_factory=deque)

    def add(self, recv_s: float, nbytes: int, modality: str) -> None:
        self.modality = modality
        self.count += 1
        self.times.append(recv_s)
        self.sizes.append(nbytes)
        if len(self.times) > self.window:
            self.times.popleft()
            self.sizes.popleft()

    def summary(self) -> dict[str, float]:
        if len(self.times) < 2:
            return {"rate_hz": 0.0, "jitter_ms": 0.0, "min_ms": 0.0, "max_ms": 0.0, "bandwidth_mbps": 0.0}
        intervals = np.diff(np.fromiter(self.times, float))
        span = self.times[-1] - self.times[0]
        # Bytes received after the first message of the window, over the window's span.
        bandwidth = (sum(self.sizes) - self.sizes[0]) / span if span > 0 else 0.0
        return {
            "rate_hz": len(intervals) / span if span > 0 else 0.0,
            "jitter_ms": float(intervals.std() * 1e3),
            "min_ms": float(intervals.min() * 1e3),
            "max_ms": float(intervals.max() * 1e3),
            "bandwidth_mbps": bandwidth * 8 / 1e6,
        }


def _collect(
    sub: Subscriber,
    duration: float | None,
    window: int,
    on_tick: Callable[[dict[str, StreamRate]], None] | None = None,
) -> dict[str, StreamRate]:
    stats: dict[str, StreamRate] = {}
    start = last_tick = time.monotonic()
    while duration is None or time.monotonic() - start < duration:
        sample = sub.recv(200)
        now = time.monotonic()
        if sample is not None:
            rate = stats.setdefault(sample.stream, StreamRate(window))
            rate.add(now, sample.nbytes, sample.modality)
        if on_tick is not None and now - last_tick >= 1.0:
            on_tick(stats)
            last_tick = now
    return stats


def _print_rates(stats: dict[str, StreamRate]) -> None:
    for stream, rate in sorted(stats.items()):
        s = rate.summary()
        print(
            f"{stream}: rate {s['rate_hz']:.2f} Hz  jitter {s['jitter_ms']:.2f} ms  "
            f"min {s['min_ms']:.2f} ms  max {s['max_ms']:.2f} ms  bw {s['bandwidth_mbps']:.2f} Mbit/s  "
            f"(window {len(rate.times)})",
            flush=True,
        )


def _hz(args: argparse.Namespace) -> int:
    """rate, jitter and bandwidth per stream

    Receive rate, interval jitter and bandwidth per stream over a rolling window, once a second, like
    `ros2 topic hz` and `bw` together. While nothing arrives, that line says why where it can (an ipc
    socket file missing, or one nothing listens on).
    """
    started = time.monotonic()

    def tick(stats: dict[str, StreamRate]) -> None:
        if stats:
            _print_rates(stats)
        else:  # say why the screen stays empty
            _no_message("hz", args, time.monotonic() - started, sub)

    with _subscribe(args, args.stream) as sub:
        stats = _collect(sub, args.duration, args.window, on_tick=tick)
    if not stats:
        _no_message("hz", args, time.monotonic() - started, sub)
        return 1
    _print_rates(stats)
    return 0


def _topics(args: argparse.Namespace) -> int:
    """list the streams seen on an endpoint

    Listen for a while and list each stream seen, with its modality and rate.
    """
    with _subscribe(args, "") as sub:
        _warn_at_start("topics", args.endpoint)  # not only after a long --duration
        stats = _collect(sub, args.duration, window=1000)
    if not stats:
        _no_message("topics", args, args.duration, sub)
        return 1
    for stream, rate in sorted(stats.items()):
        print(f"{stream}  {rate.modality}  {rate.summary()['rate_hz']:.2f} Hz  ({rate.count} messages)")
    return 0
