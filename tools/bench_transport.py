"""Transport throughput: wire v1 against raw ZeroMQ bytes, msgpack-embedded arrays and pickle.

`raw zmq 3 frames` sends wire v1's frames (topic, a header packed once, the array) with no codec: what
wire v1's layout costs in zmq alone, the ceiling of any implementation of it.

Each run forks a receiver process, which forks a sender that encodes and sends COUNT messages of one
payload size through a lossless XPUB socket (so nothing is dropped and every contender moves the same
data); the receiver decodes them to a numpy array. The sender keeps at most a window of messages
unacknowledged (`_window`): the receiver returns a credit for each half window over a second socket.
That is application-level flow control as a lossless stream needs it, the same for every contender, and
it is what keeps the shared-memory contender lossless: its 16-slot ring is never overtaken by an unread
message. Throughput is COUNT over the time from the first to the last message received. Contenders run
round-robin within each repeat so machine noise hits them alike, and each ratio is taken within a
repeat (wire v1 against the contender run just before or after it), then its median over the repeats is
reported with its range. CPU per message is user + system time of both processes (their zmq I/O threads
included) over the sending and receiving loops: the cost a message puts on the machine, which the load
of other work moves much less than throughput.

Each contender runs under one of two glibc allocator settings, set in its own pair of processes:
``tuned`` (fusion_pipeline.allocator: what every pipeline node and the CLI set at start) and ``glibc``
(the defaults, as a plain Python program runs). The 1 MiB figures depend on it: with the defaults a
received frame's buffer often comes back as fresh pages (page faults), depending on how the other
allocations of a message interleave; the ratios are to wire v1 as the pipeline runs it.

    python tools/bench_transport.py --repeats 5 --write docs/BENCHMARKS.md --plot docs/bench_transport.png

pickle appears here only as the baseline users would otherwise reach for; the pipeline never uses it.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import pickle
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import zmq
from benchdoc import machine, replace_section

from fusion_pipeline.allocator import tune_allocator
from fusion_pipeline.transport import (
    DEFAULT_SLOTS,
    MIN_BYTES,
    Limits,
    Sample,
    SegmentReader,
    SegmentWriter,
    decode,
    encode,
    recv_frames,
    send_frames,
)

Figures = dict[tuple[str, str, str], list[float]]  # (transport, payload, contender) -> one value per repeat

SIZES = {"1 KiB": 1024, "64 KiB": 64 * 1024, "1 MiB": 1024 * 1024, "8 MiB": 8 * 1024 * 1024}
LIMITS = Limits(max_array_bytes=16 * 1024 * 1024, max_total_bytes=16 * 1024 * 1024)


def _payload(nbytes: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, nbytes, dtype=np.uint8)


# Each contender: (send one message, receive and decode one message to an ndarray). Only wire v1 uses
# the shared-memory ends, which the sender and the receiver process each open when the contender has them.
def _wire_send(sock: zmq.Socket, array: np.ndarray, seq: int, segments: SegmentWriter | None) -> None:
    send_frames(sock, encode(Sample("bench/data", "bench", seq, seq, {"data": array}), segments))


def _wire_recv(sock: zmq.Socket, segments: SegmentReader | None) -> np.ndarray:
    return decode(recv_frames(sock), LIMITS, segments).arrays["data"]


def _raw_send(sock: zmq.Socket, array: np.ndarray, seq: int, _: None) -> None:
    sock.send(array, copy=array.nbytes < 65536)


def _raw_recv(sock: zmq.Socket, _: None) -> np.ndarray:
    return np.frombuffer(sock.recv(copy=False), np.uint8)


# Wire v1's frames with no codec: the topic, a header packed once, the array. What any implementation of
# wire v1's layout (three frames per message) pays in zmq alone: the ceiling for the codec.
_FRAMES_HEADER = msgpack.packb(
    {
        "v": 1,
        "stream": "bench/data",
        "modality": "bench",
        "seq": 0,
        "stamp_ns": 0,
        "frame_id": "",
        "meta": {},
        "arrays": [{"name": "data", "dtype": "|u1", "shape": [0]}],
    }
)


def _frames_send(sock: zmq.Socket, array: np.ndarray, seq: int, _: None) -> None:
    sock.send(b"bench/data", zmq.SNDMORE)
    sock.send(_FRAMES_HEADER, zmq.SNDMORE)
    sock.send(array, copy=array.nbytes < 65536)


def _frames_recv(sock: zmq.Socket, _: None) -> np.ndarray:
    frames = recv_frames(sock)
    return np.frombuffer(frames[-1], np.uint8)


def _msgpack_send(sock: zmq.Socket, array: np.ndarray, seq: int, _: None) -> None:
    message = {
        "stream": "bench/data",
        "seq": seq,
        "dtype": array.dtype.str,
        "shape": list(array.shape),
        "data": array.tobytes(),
    }
    sock.send(msgpack.packb(message), copy=False)


def _msgpack_recv(sock: zmq.Socket, _: None) -> np.ndarray:
    message = msgpack.unpackb(sock.recv(copy=False), raw=False)
    return np.frombuffer(message["data"], message["dtype"]).reshape(message["shape"])


def _pickle_send(sock: zmq.Socket, array: np.ndarray, seq: int, _: None) -> None:
    sock.send(
        pickle.dumps({"stream": "bench/data", "seq": seq, "data": array}, pickle.HIGHEST_PROTOCOL), copy=False
    )


def _pickle_recv(sock: zmq.Socket, _: None) -> np.ndarray:
    return pickle.loads(sock.recv(copy=False))["data"]


CONTENDERS: dict[str, tuple[Callable, Callable]] = {
    "wire v1": (_wire_send, _wire_recv),
    "wire v1 shm": (_wire_send, _wire_recv),
    "raw zmq bytes": (_raw_send, _raw_recv),
    "raw zmq 3 frames": (_frames_send, _frames_recv),
    "msgpack+bytes": (_msgpack_send, _msgpack_recv),
    "pickle": (_pickle_send, _pickle_recv),
}
#: (contender, allocator) pairs measured; the first is the pipeline as it runs, the others' reference.
RUNS: tuple[tuple[str, str], ...] = (
    ("wire v1", "tuned"),
    ("wire v1 shm", "tuned"),
    ("wire v1", "glibc"),
    ("raw zmq bytes", "tuned"),
    ("raw zmq bytes", "glibc"),
    ("raw zmq 3 frames", "tuned"),
    ("msgpack+bytes", "glibc"),
    ("pickle", "tuned"),
    ("pickle", "glibc"),
)
REFERENCE = "wire v1 [tuned]"


def _runs(transport: str) -> list[tuple[str, str]]:
    """The runs of one transport: shared memory exists on one host only (ipc)."""
    return [run for run in RUNS if transport == "ipc" or not run[0].endswith("shm")]


def _label(contender: str, allocator: str) -> str:
    return f"{contender} [{allocator}]"


def _window(nbytes: int) -> int:
    """Messages the sender may have in flight: half the shared-memory ring for the sizes that go through
    it, so no contender's reader is ever overtaken; small messages get a window that keeps the pipe full."""
    return DEFAULT_SLOTS // 2 if nbytes >= MIN_BYTES else 256


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # every thread of this process
    return usage.ru_utime + usage.ru_stime


def _sender(endpoint: str, contender: str, nbytes: int, count: int, bound: Connection) -> None:
    send, _ = CONTENDERS[contender]
    segments = SegmentWriter("bench") if contender.endswith("shm") else None
    array = _payload(nbytes)
    context = zmq.Context()
    sock = context.socket(zmq.XPUB)
    sock.setsockopt(zmq.XPUB_NODROP, 1)
    sock.sndhwm = 16
    sock.linger = -1
    sock.bind(endpoint)
    credits = context.socket(zmq.PULL)
    credits.bind(f"{endpoint}.credit" if endpoint.startswith("ipc") else "tcp://127.0.0.1:*")
    # tcp: the ports the system picked
    bound.send((sock.last_endpoint.decode(), credits.last_endpoint.decode()))
    sock.recv()  # wait for the subscription
    cpu = _cpu_s()
    granted = window = _window(nbytes)
    for seq in range(count):
        while seq >= granted:
            credits.recv()
            granted += window // 2
        send(sock, array, seq, segments)
    while sock.recv()[:1] != b"\x00":  # the receiver unsubscribed: it has everything
        pass
    bound.send(_cpu_s() - cpu)
    sock.close()
    credits.close()
    context.term()
    if segments is not None:
        segments.close()


def run_once(transport: str, contender: str, nbytes: int, count: int, workdir: Path) -> tuple[float, float]:
    """(messages per second, CPU µs per message of both processes) for one run."""
    endpoint = f"ipc://{workdir}/bench.sock" if transport == "ipc" else "tcp://127.0.0.1:*"
    _, recv = CONTENDERS[contender]
    segments = SegmentReader() if contender.endswith("shm") else None
    bound, tell = mp.get_context("fork").Pipe(duplex=False)
    sender = mp.get_context("fork").Process(target=_sender, args=(endpoint, contender, nbytes, count, tell))
    sender.start()
    endpoint, credit_endpoint = bound.recv()
    context = zmq.Context()
    credits = context.socket(zmq.PUSH)
    credits.connect(credit_endpoint)
    sock = context.socket(zmq.SUB)
    sock.rcvhwm = 16
    sock.rcvtimeo = 60_000  # a lost message or a dead sender fails the run instead of hanging it
    sock.subscribe(b"")
    sock.connect(endpoint)
    window = _window(nbytes)
    cpu = _cpu_s()
    first = recv(sock, segments)
    start = time.perf_counter()
    for received in range(2, count + 1):
        if received % (window // 2) == 1:  # the previous half window is decoded
            credits.send(b"")
        array = recv(sock, segments)
    elapsed = time.perf_counter() - start
    cpu = _cpu_s() - cpu
    assert first.nbytes == nbytes and array.nbytes == nbytes
    sock.unsubscribe(b"")
    sock.close(0)
    credits.close(0)
    context.term()
    cpu += bound.recv()
    sender.join()
    return (count - 1) / elapsed, cpu / count * 1e6


def run_isolated(allocator: str, *args: Any) -> tuple[float, float]:
    """`run_once` in a fresh receiver process (forked from this untuned one) with the allocator set."""
    parent, child = mp.get_context("fork").Pipe(duplex=False)

    def receiver() -> None:
        if allocator == "tuned":
            tune_allocator()  # before the sender forks, so both ends run as the nodes do
        child.send(run_once(*args))

    process = mp.get_context("fork").Process(target=receiver)
    process.start()
    result = parent.recv()
    process.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--budget-mb", type=float, default=384, help="bytes moved per run (sets the count)")
    parser.add_argument("--write", type=Path, help="update the Transport section of this markdown file")
    parser.add_argument("--plot", type=Path, help="write a PNG bar chart")
    parser.add_argument("--sizes", nargs="+", choices=list(SIZES), default=list(SIZES))
    parser.add_argument("--transports", nargs="+", choices=["ipc", "tcp"], default=["ipc", "tcp"])
    args = parser.parse_args()

    results: Figures = {}  # msg/s
    cpu: Figures = {}  # CPU µs per message
    with tempfile.TemporaryDirectory(prefix="fp-bench-") as tmp:
        for transport in args.transports:
            for label in args.sizes:
                nbytes = SIZES[label]
                count = int(max(100, min(50_000, args.budget_mb * 1024 * 1024 / nbytes)))
                for _ in range(args.repeats):
                    for contender, allocator in _runs(transport):
                        rate, us = run_isolated(allocator, transport, contender, nbytes, count, Path(tmp))
                        key = (transport, label, _label(contender, allocator))
                        results.setdefault(key, []).append(rate)
                        cpu.setdefault(key, []).append(us)
                print(
                    f"{transport} {label}: "
                    + ", ".join(
                        f"{_label(*run)} {statistics.median(results[(transport, label, _label(*run))]):,.0f}"
                        for run in _runs(transport)
                    )
                    + " msg/s",
                    flush=True,
                )
    table = _table(results, cpu, args.repeats) + "\n\n" + _acceptance(results)
    print(table)
    if args.write:
        replace_section(args.write, _section(table))
    if args.plot:
        _plot(results, args.plot)


def _table(results: Figures, cpu: Figures, repeats: int) -> str:
    lines = [
        "| transport | payload | contender | msg/s (median) | GB/s (median) | spread min–max msg/s "
        f"| {REFERENCE} ÷ this, per repeat: median (min–max) | CPU µs/msg (median) |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for (transport, label, contender), rates in results.items():
        median = statistics.median(rates)
        paired = [w / r for w, r in zip(results[(transport, label, REFERENCE)], rates, strict=True)]
        ratio = (
            "—"
            if contender == REFERENCE
            else f"{statistics.median(paired):.2f}× ({min(paired):.2f}–{max(paired):.2f})"
        )
        lines.append(
            f"| {transport} | {label} | {contender} | {median:,.0f} | {median * SIZES[label] / 1e9:.2f} | "
            f"{min(rates):,.0f}–{max(rates):,.0f} | {ratio} | "
            f"{statistics.median(cpu[(transport, label, contender)]):,.0f} |"
        )
    return "\n".join(lines) + f"\n\nMedians of {repeats} runs each."


#: The bars wire v1 is held to over ipc, paired per repeat: payload -> contender -> (issue, at least).
ACCEPTANCE: dict[str, dict[str, tuple[tuple[str, float], ...]]] = {
    "1 KiB": {"raw zmq bytes": (("issue 16", 0.5),), "pickle": (("issue 16", 2.0),)},
    "1 MiB": {
        "raw zmq bytes": (("the foundation issue", 0.8), ("issue 16", 0.9)),
        "pickle": (("the foundation issue", 3.0),),
    },
}


def _acceptance(results: Figures) -> str:
    """Each bar of ACCEPTANCE against both allocators' runs of the contender, and what bounds them."""
    blocks = []
    for payload, bars in ACCEPTANCE.items():
        key = ("ipc", payload)
        if (*key, REFERENCE) not in results:
            continue
        lines = []
        # Shared memory only changes arrays of MIN_BYTES and more: below, wire v1 shm is wire v1.
        shm = [_label("wire v1 shm", "tuned")] if SIZES[payload] >= MIN_BYTES else []
        for wire in (REFERENCE, *shm):
            parts = []
            for contender, issues in bars.items():
                for allocator in ("tuned", "glibc"):
                    paired = _paired(results[(*key, wire)], results[(*key, _label(contender, allocator))])
                    ratio = statistics.median(paired)
                    verdicts = ", ".join(
                        f"{'meets' if ratio >= bar else 'misses'} {issue}'s >= {bar:g}×"
                        for issue, bar in issues
                    )
                    parts.append(
                        f"{ratio:.2f}× ({min(paired):.2f}–{max(paired):.2f}) {_label(contender, allocator)} "
                        f"({verdicts})"
                    )
            lines.append(f"- {wire}: {'; '.join(parts)}.")
        blocks.append(
            f"Against the acceptance, {payload} over ipc, paired per repeat, median (min–max):\n\n"
            + "\n".join(lines)
            + "\n\n"
            + _ceilings(results, key)
        )
    return "\n\n".join(blocks)


def _paired(numerators: list[float], denominators: list[float]) -> list[float]:
    return [n / d for n, d in zip(numerators, denominators, strict=True)]


def _ceilings(results: Figures, key: tuple[str, str]) -> str:
    """What no codec can pass: raw zmq bytes ÷ pickle bounds any format sent as zmq frames, and raw zmq 3
    frames (wire v1's frames, no codec) bounds wire v1 against both."""
    parts = []
    for allocator in ("tuned", "glibc"):
        raw, pickled = (results[(*key, _label(c, allocator))] for c in ("raw zmq bytes", "pickle"))
        parts.append(f"raw zmq bytes ÷ pickle {statistics.median(_paired(raw, pickled)):.2f}× [{allocator}]")
    frames = results[(*key, _label("raw zmq 3 frames", "tuned"))]
    for contender in ("raw zmq bytes", "pickle"):
        paired = _paired(frames, results[(*key, _label(contender, "tuned"))])
        parts.append(f"raw zmq 3 frames ÷ {contender} {statistics.median(paired):.2f}× [tuned]")
    return (
        f"Ceilings: {'; '.join(parts)}. Wire v1 carries a message in three frames (topic, header, array), "
        "and raw zmq 3 frames sends those frames with no encoding or checks: no wire v1 codec can pass it. "
        "Shared memory is not bound by these (the payload never crosses the socket), though it still "
        "copies each array once on each side."
    )


def _section(table: str) -> str:
    command = " ".join(["python tools/bench_transport.py", *sys.argv[1:]])
    return (
        f"## Transport\n\nCommand: `{command}` ({machine()}, loopback; sender and receiver are separate "
        f"processes; every contender decodes to a numpy array). `[tuned]`: the glibc allocator thresholds "
        f"every pipeline node sets (fusion_pipeline.allocator); `[glibc]`: the defaults, as a plain Python "
        f"program runs. `wire v1 shm`: the same codec with `pipeline.shm` on (PROTOCOL 3.2), arrays of "
        f"128 KiB and more through a 16-slot shared-memory ring, smaller ones inline (at 1 KiB and 64 KiB "
        f"it is wire v1). `raw zmq 3 frames`: wire v1's three frames (topic, a header packed once, the "
        f"array) sent and received with no codec, the ceiling of any wire v1 implementation. Every "
        f"contender runs under the same credit window (at most 8 messages of 128 KiB "
        f"and more in flight, 256 below), so none outruns its reader. The ratio column divides wire v1 "
        f"[tuned] by the contender run back to back with it in the same repeat, median and range over the "
        f"repeats; CPU µs/msg is the user + system time of both processes (zmq I/O threads included) per "
        f"message.\n\n{table}\n\n"
        f"![transport throughput](bench_transport.png)\n"
    )


def _plot(results: Figures, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    transports = sorted({key[0] for key in results})
    sizes = [label for label in SIZES if any(key[1] == label for key in results)]
    fig, axes = plt.subplots(
        1, len(transports), figsize=(6 * len(transports), 4.5), sharey=True, squeeze=False
    )
    width = 0.8 / len(RUNS)
    for ax, transport in zip(axes[0], transports, strict=True):
        for i, run in enumerate(RUNS):
            values = [
                statistics.median(results.get((transport, label, _label(*run)), [0])) * SIZES[label] / 1e9
                for label in sizes
            ]
            offset = (i - (len(RUNS) - 1) / 2) * width
            ax.bar(np.arange(len(sizes)) + offset, values, width, label=_label(*run))
        ax.set_xticks(range(len(sizes)), sizes)
        ax.set_title(f"{transport} (median GB/s, higher is better)")
        ax.set_yscale("log")
    axes[0][0].set_ylabel("GB/s")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
