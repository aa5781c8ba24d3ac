"""Transport throughput: wire v1 against raw ZeroMQ bytes, msgpack-embedded arrays and pickle.

Each run forks a sender process that encodes and sends COUNT messages of one payload size through a
lossless XPUB socket (so nothing is dropped and every contender moves the same data); this process
receives and decodes them to a numpy array. Throughput is COUNT over the time from the first to the last
message received. Contenders run round-robin within each repeat so machine noise hits them alike.

    python tools/bench_transport.py --repeats 5 --write docs/BENCHMARKS.md --plot docs/bench_transport.png

pickle appears here only as the baseline users would otherwise reach for; the pipeline never uses it.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import pickle
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import msgpack
import numpy as np
import zmq

from fusion_pipeline.allocator import tune_allocator
from fusion_pipeline.transport import recv_frames, send_frames
from fusion_pipeline.wire import Limits, Sample, decode, encode

SIZES = {"1 KiB": 1024, "64 KiB": 64 * 1024, "1 MiB": 1024 * 1024, "8 MiB": 8 * 1024 * 1024}
LIMITS = Limits(max_array_bytes=16 * 1024 * 1024, max_total_bytes=16 * 1024 * 1024)


def _payload(nbytes: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, nbytes, dtype=np.uint8)


# Each contender: (send one message, receive and decode one message to an ndarray).
def _wire_send(sock: zmq.Socket, array: np.ndarray, seq: int) -> None:
    send_frames(sock, encode(Sample("bench/data", "bench", seq, seq, {"data": array})))


def _wire_recv(sock: zmq.Socket) -> np.ndarray:
    return decode(recv_frames(sock), LIMITS).arrays["data"]


def _raw_send(sock: zmq.Socket, array: np.ndarray, seq: int) -> None:
    sock.send(array, copy=array.nbytes < 65536)


def _raw_recv(sock: zmq.Socket) -> np.ndarray:
    return np.frombuffer(sock.recv(copy=False), np.uint8)


def _msgpack_send(sock: zmq.Socket, array: np.ndarray, seq: int) -> None:
    message = {
        "stream": "bench/data",
        "seq": seq,
        "dtype": array.dtype.str,
        "shape": list(array.shape),
        "data": array.tobytes(),
    }
    sock.send(msgpack.packb(message), copy=False)


def _msgpack_recv(sock: zmq.Socket) -> np.ndarray:
    message = msgpack.unpackb(sock.recv(copy=False), raw=False)
    return np.frombuffer(message["data"], message["dtype"]).reshape(message["shape"])


def _pickle_send(sock: zmq.Socket, array: np.ndarray, seq: int) -> None:
    sock.send(
        pickle.dumps({"stream": "bench/data", "seq": seq, "data": array}, pickle.HIGHEST_PROTOCOL), copy=False
    )


def _pickle_recv(sock: zmq.Socket) -> np.ndarray:
    return pickle.loads(sock.recv(copy=False))["data"]


CONTENDERS: dict[str, tuple[Callable, Callable]] = {
    "wire v1": (_wire_send, _wire_recv),
    "raw zmq bytes": (_raw_send, _raw_recv),
    "msgpack+bytes": (_msgpack_send, _msgpack_recv),
    "pickle": (_pickle_send, _pickle_recv),
}


def _sender(endpoint: str, contender: str, nbytes: int, count: int) -> None:
    send, _ = CONTENDERS[contender]
    array = _payload(nbytes)
    context = zmq.Context()
    sock = context.socket(zmq.XPUB)
    sock.setsockopt(zmq.XPUB_NODROP, 1)
    sock.sndhwm = 16
    sock.linger = -1
    sock.bind(endpoint)
    sock.recv()  # wait for the subscription
    for seq in range(count):
        send(sock, array, seq)
    while sock.recv()[:1] != b"\x00":  # the receiver unsubscribed: it has everything
        pass
    sock.close()
    context.term()


def run_once(transport: str, contender: str, nbytes: int, count: int, workdir: Path) -> float:
    """Messages per second for one run."""
    endpoint = f"ipc://{workdir}/bench.sock" if transport == "ipc" else "tcp://127.0.0.1:*"
    if transport == "tcp":
        probe = zmq.Context.instance().socket(zmq.PUB)
        port = probe.bind_to_random_port("tcp://127.0.0.1")
        probe.close(0)
        endpoint = f"tcp://127.0.0.1:{port}"
    _, recv = CONTENDERS[contender]
    sender = mp.get_context("fork").Process(target=_sender, args=(endpoint, contender, nbytes, count))
    sender.start()
    context = zmq.Context()
    sock = context.socket(zmq.SUB)
    sock.rcvhwm = 16
    sock.subscribe(b"")
    sock.connect(endpoint)
    first = recv(sock)
    start = time.perf_counter()
    for _ in range(count - 1):
        array = recv(sock)
    elapsed = time.perf_counter() - start
    assert first.nbytes == nbytes and array.nbytes == nbytes
    sock.unsubscribe(b"")
    sock.close(0)
    context.term()
    sender.join()
    return (count - 1) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--budget-mb", type=float, default=384, help="bytes moved per run (sets the count)")
    parser.add_argument("--write", type=Path, help="update the Transport section of this markdown file")
    parser.add_argument("--plot", type=Path, help="write a PNG bar chart")
    parser.add_argument("--sizes", nargs="+", choices=list(SIZES), default=list(SIZES))
    parser.add_argument("--transports", nargs="+", choices=["ipc", "tcp"], default=["ipc", "tcp"])
    parser.add_argument(
        "--allocator",
        choices=["tuned", "default"],
        default="tuned",
        help="tuned: glibc thresholds as every node sets them (fusion_pipeline.allocator); default: glibc's",
    )
    args = parser.parse_args()
    if args.allocator == "tuned":
        tune_allocator()  # before the senders fork, so both ends run as the nodes do

    results: dict[tuple[str, str, str], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="fp-bench-") as tmp:
        for transport in args.transports:
            for label in args.sizes:
                nbytes = SIZES[label]
                count = int(max(100, min(50_000, args.budget_mb * 1024 * 1024 / nbytes)))
                for _ in range(args.repeats):
                    for contender in CONTENDERS:
                        rate = run_once(transport, contender, nbytes, count, Path(tmp))
                        results.setdefault((transport, label, contender), []).append(rate)
                print(
                    f"{transport} {label}: "
                    + ", ".join(
                        f"{c} {statistics.median(results[(transport, label, c)]):,.0f} msg/s"
                        for c in CONTENDERS
                    ),
                    flush=True,
                )
    table = _table(results, args.repeats)
    print(table)
    if args.write:
        _write_section(args.write, table)
    if args.plot:
        _plot(results, args.plot)


def _table(results: dict[tuple[str, str, str], list[float]], repeats: int) -> str:
    lines = [
        "| transport | payload | contender | msg/s (median) | GB/s (median) | spread min–max msg/s "
        "| wire v1 ÷ this |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for (transport, label, contender), rates in results.items():
        median = statistics.median(rates)
        wire = statistics.median(results[(transport, label, "wire v1")])
        ratio = "—" if contender == "wire v1" else f"{wire / median:.2f}×"
        lines.append(
            f"| {transport} | {label} | {contender} | {median:,.0f} | {median * SIZES[label] / 1e9:.2f} | "
            f"{min(rates):,.0f}–{max(rates):,.0f} | {ratio} |"
        )
    return "\n".join(lines) + f"\n\nMedians of {repeats} runs each."


def _write_section(path: Path, table: str) -> None:
    heading = "## Transport"
    body = (
        f"{heading}\n\nCommand: `python tools/bench_transport.py --repeats 5 --write docs/BENCHMARKS.md "
        f"--plot docs/bench_transport.png` (2-core CPU machine, loopback; sender and receiver are separate "
        f"processes; every contender decodes to a numpy array).\n\n{table}\n\n"
        f"![transport throughput](bench_transport.png)\n"
    )
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    start = text.find(heading + "\n")
    if start == -1:
        text = text.rstrip("\n") + "\n\n" + body
    else:
        end = text.find("\n## ", start + len(heading))
        text = text[:start] + body + (text[end + 1 :] if end != -1 else "")
    path.write_text(text)


def _plot(results: dict[tuple[str, str, str], list[float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    width = 0.2
    for ax, transport in zip(axes, ("ipc", "tcp"), strict=True):
        for i, contender in enumerate(CONTENDERS):
            values = [
                statistics.median(results[(transport, label, contender)]) * SIZES[label] / 1e9
                for label in SIZES
            ]
            ax.bar(np.arange(len(SIZES)) + (i - 1.5) * width, values, width, label=contender)
        ax.set_xticks(range(len(SIZES)), list(SIZES))
        ax.set_title(f"{transport} (median GB/s, higher is better)")
        ax.set_yscale("log")
    axes[0].set_ylabel("GB/s")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
