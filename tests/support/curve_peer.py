"""Child process for CURVE tests: a tcp peer that connects with its own certificate.

Usage: python curve_peer.py pub|sub ENDPOINT CERT_SECRET SERVER_PUBLIC SECONDS
pub: publishes stream "radar/front" for SECONDS; sub: prints the seq of every sample received.
"""

import sys
import time
from pathlib import Path

import numpy as np

from fusion_pipeline.transport import Curve, Publisher, Subscriber


def main() -> None:
    role, endpoint, cert, server, seconds = sys.argv[1:6]
    curve = Curve(certificate=Path(cert), server_key=Path(server))
    deadline = time.monotonic() + float(seconds)
    if role == "pub":
        with Publisher(endpoint, "radar/front", "radar", bind=False, curve=curve) as pub:
            while time.monotonic() < deadline:
                pub.publish(time.time_ns(), detections=np.zeros((1, 5), np.float32))
                time.sleep(0.02)
    else:
        with Subscriber(endpoint, curve=curve) as sub:
            while time.monotonic() < deadline:
                sample = sub.recv(timeout_ms=100)
                if sample is not None:
                    print(sample.seq, flush=True)


if __name__ == "__main__":
    main()
