"""A sensor driver written from docs/PROTOCOL.md alone: only pyzmq and msgpack, no fusion_pipeline import.

Usage: python protocol_publisher.py ENDPOINT COUNT RATE_HZ
Publishes COUNT radar messages (3x5 float32 detections) then exits.
"""

import struct
import sys
import time

import msgpack
import zmq


def main() -> None:
    endpoint, count, rate = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    sock = zmq.Context().socket(zmq.PUB)
    sock.linger = 0
    sock.bind(endpoint)
    time.sleep(0.3)  # let subscribers connect (PUB/SUB drops what is sent before they join)
    for seq in range(count):
        rows = [(10.0 + seq, 0.5, 0.2, -3.0, 12.0), (20.0, -1.0, 0.1, 0.0, 5.0), (5.0, 2.0, 0.0, 1.5, -2.0)]
        payload = b"".join(struct.pack("<5f", *row) for row in rows)  # little-endian float32, row-major
        header = {
            "v": 1,
            "stream": "radar/front",
            "modality": "radar",
            "seq": seq,
            "stamp_ns": time.time_ns(),
            "frame_id": "radar_front",
            "meta": {},
            "arrays": [{"name": "detections", "dtype": "<f4", "shape": [3, 5]}],
        }
        sock.send_multipart([b"radar/front", msgpack.packb(header), payload])
        time.sleep(1.0 / rate)
    sock.close()


if __name__ == "__main__":
    main()
