"""Per-message cost of wire v1, step by step, in one process: where a small message's CPU time goes.

Each step runs over a batch of messages, timed as a whole in CPU time of this thread (time spent
waiting for a CPU on a busy machine is not counted), and the batches of all steps alternate so that
noise hits them alike; the table gives the median per message over the batches and its range. Sockets
are in-process (inproc PAIR for the codec steps, ipc PUB/SUB for the node path) and the allocator is
tuned as in every node, so the figures are the Python side of each call; the zmq I/O threads' share is
in bench_transport.py.

    python tools/profile_wire.py --bytes 1024 --batches 15

Steps: `Sample` builds the record, `encode` makes the frames, `send_frames` / `recv_frames` move them
(raw zmq: one frame of the same bytes, send and receive), `check` validates the header and sizes,
`materialize` makes the arrays, `decode` is check + materialize; `Publisher.send` and `Subscriber.recv`
are the path a node takes (encode + send; receive + check + materialize + counters).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import zmq

from fusion_pipeline.allocator import tune_allocator
from fusion_pipeline.transport import (
    Limits,
    Publisher,
    Role,
    Sample,
    Subscriber,
    check,
    decode,
    encode,
    recv_frames,
    send_frames,
)

LIMITS = Limits(max_array_bytes=16 * 1024 * 1024, max_total_bytes=16 * 1024 * 1024)
STREAM = "bench/data"


def _pair(context: zmq.Context, name: str) -> tuple[zmq.Socket, zmq.Socket]:
    """Two connected inproc sockets that queue a whole batch (no high-water mark)."""
    sender, receiver = context.socket(zmq.PAIR), context.socket(zmq.PAIR)
    for socket in (sender, receiver):
        socket.sndhwm = socket.rcvhwm = 0
    sender.bind(f"inproc://{name}")
    receiver.connect(f"inproc://{name}")
    return sender, receiver


def _node_path(workdir: Path, batch: int) -> tuple[Publisher, Subscriber]:
    """A Publisher and a Subscriber on one ipc endpoint, connected (the slow joiner is waited out)."""
    url = f"ipc://{workdir}/profile.sock"
    publisher = Publisher(url, STREAM, "bench", hwm=2 * batch, role=Role.SENSOR)
    subscriber = Subscriber(url, [STREAM], limits=LIMITS, hwm=2 * batch)
    while subscriber.recv(timeout_ms=10) is None:
        publisher.publish(0, data=np.zeros(1, np.uint8))
    while subscriber.recv(timeout_ms=50) is not None:  # what the probes left queued
        pass
    return publisher, subscriber


def profile(nbytes: int, batch: int, batches: int, workdir: Path) -> dict[str, list[float]]:
    """µs per message of each step, one value per batch."""
    array = np.random.default_rng(0).integers(0, 255, nbytes, dtype=np.uint8)
    sample = Sample(STREAM, "bench", 1, 1, {"data": array})
    frames = encode(sample)
    received = [bytes(memoryview(f)) for f in frames]
    checked = check(received, LIMITS)
    context = zmq.Context()
    wire_out, wire_in = _pair(context, "wire")
    raw_out, raw_in = _pair(context, "raw")
    publisher, subscriber = _node_path(workdir, batch)

    def repeat(step: Callable[[], object]) -> Callable[[], None]:
        def run() -> None:
            for _ in range(batch):
                step()

        return run

    steps: dict[str, Callable[[], None]] = {
        "Sample": repeat(lambda: Sample(STREAM, "bench", 1, 1, {"data": array})),
        "encode": repeat(lambda: encode(sample)),
        "send_frames": repeat(lambda: send_frames(wire_out, frames)),
        "recv_frames": repeat(lambda: recv_frames(wire_in)),
        "check (header validation)": repeat(lambda: check(received, LIMITS)),
        "materialize (arrays)": repeat(checked.materialize),
        "decode = check + materialize": repeat(lambda: decode(received, LIMITS)),
        "Publisher.send (encode + send)": repeat(lambda: publisher.send(sample)),
        "Subscriber.recv (recv + decode + counters)": repeat(subscriber.recv),
        "raw zmq send (1 frame)": repeat(lambda: raw_out.send(array, copy=nbytes < 65536)),
        "raw zmq recv (1 frame)": repeat(lambda: np.frombuffer(raw_in.recv(copy=False), np.uint8)),
    }
    figures: dict[str, list[float]] = {name: [] for name in steps}
    try:
        for _ in range(batches):
            for name, run in steps.items():  # a receive step follows the send step that fed it
                start = time.thread_time_ns()
                run()
                figures[name].append((time.thread_time_ns() - start) / batch / 1000)
        assert subscriber.received >= batch * batches and not subscriber.malformed
    finally:
        publisher.close()
        subscriber.close()
        for socket in (wire_out, wire_in, raw_out, raw_in):
            socket.close(0)
        context.term()
    return figures


def table(figures: dict[str, list[float]]) -> str:
    lines = ["| step | µs per message (median) | min–max |", "|---|---:|---:|"]
    for name, values in figures.items():
        lines.append(f"| {name} | {statistics.median(values):.2f} | {min(values):.2f}–{max(values):.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bytes", type=int, default=1024, help="payload: one uint8 array of this size")
    parser.add_argument("--batch", type=int, default=2000, help="messages per timed batch")
    parser.add_argument("--batches", type=int, default=15)
    args = parser.parse_args()
    tune_allocator()  # as every node runs (fusion_pipeline.allocator)
    with tempfile.TemporaryDirectory(prefix="fp-profile-") as tmp:
        print(table(profile(args.bytes, args.batch, args.batches, Path(tmp))))


if __name__ == "__main__":
    main()
