"""A SCHED_IDLE neighbour for a live pipeline, to tell apart what a viewer's presence costs it.

    python tools/idle_neighbour.py burner 0.1                    # busy 10 % of each 10 ms, no memory work
    python tools/idle_neighbour.py subscriber ipc:///run/a.sock  # one more subscriber, every message dropped

`tools/bench_e2e.py --viewer N --neighbours` starts each beside the demo, as it starts the viewer node: the
burner takes the viewer's CPU share with none of its memory traffic; the subscriber puts one more
subscriber on every driver's socket (what the viewer adds to the drivers) and does nothing with what it
receives. Both run under SCHED_IDLE, as the viewer node does, until killed.
"""

from __future__ import annotations

import argparse
import os
import time

import zmq

PERIOD_S = 0.01
HWM = 8  # the viewer's queue depth (transport.DEFAULT_HWM)


def burn(share: float) -> None:
    """Spin for `share` of every PERIOD_S, sleep the rest."""
    while True:
        end = time.perf_counter() + share * PERIOD_S
        while time.perf_counter() < end:
            pass
        time.sleep((1 - share) * PERIOD_S)


def subscribe(endpoints: list[str]) -> None:
    """Receive everything published on `endpoints` and drop it."""
    socket = zmq.Context.instance().socket(zmq.SUB)
    socket.setsockopt(zmq.RCVHWM, HWM)
    socket.setsockopt(zmq.SUBSCRIBE, b"")
    for endpoint in endpoints:
        socket.connect(endpoint)  # before the publisher binds is fine: zmq reconnects
    while True:
        socket.recv_multipart(copy=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    kinds = parser.add_subparsers(dest="kind", required=True)
    kinds.add_parser("burner").add_argument("share", type=float, help="busy share of each 10 ms, 0-1")
    kinds.add_parser("subscriber").add_argument("endpoints", nargs="+", help="publisher endpoints")
    args = parser.parse_args()
    os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    if args.kind == "burner":
        if not 0 < args.share < 1:
            parser.error(f"share: {args.share} is not between 0 and 1")
        burn(args.share)
    else:
        subscribe(args.endpoints)


if __name__ == "__main__":
    main()
