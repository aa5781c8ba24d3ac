"""Poses as the ingest node of one stream, publishing model-ready samples at the stream's rate_hz, shaped
like the model input the config binds the stream to: the load of tools/bench_sync_node.py, and the input
of the synchronizer node's tests.

Usage: python tools/pose_ingest.py CONFIG RUN_DIR STREAM [SECONDS [START_NS]]

Frame k of a discrete stream is stamped t0 + k / rate_hz and sent at that time, as the demo's
simulated drivers and hardware-triggered sensors stamp their captures (on their rate's grid, with no
latency); audio goes out as 20 ms float32 chunks of 16 kHz samples whose stamps are exactly contiguous
(chunk k starts at t0 + k * 20 ms) and each chunk is sent once its last sample is due. Sample k of a
discrete stream is filled with the value k, so a test can trace which message went into a set.
START_NS (UNIX epoch ns) is when the stream's first period starts (default: now): posers given related
starts keep a fixed phase between their streams.
"""

import sys
import time

import numpy as np

from fusion_pipeline.config import load_config
from fusion_pipeline.inference import load_bindings
from fusion_pipeline.protocol import INGEST_IN, INGEST_OUT
from fusion_pipeline.transport import Publisher

CHUNK_MS = 20


def main() -> None:
    config_path, run_dir, stream_name = sys.argv[1:4]
    seconds = float(sys.argv[4]) if len(sys.argv) > 4 else float("inf")
    start_ns = int(sys.argv[5]) if len(sys.argv) > 5 else None
    config = load_config(config_path)
    stream = config.stream(stream_name)
    tensors = load_bindings(config).of(stream.name).input.tensors  # name -> shape (a radar's mask too)
    endpoint = config.ingest_endpoint(stream.name, run_dir)
    audio = stream.modality == "audio"
    period_ns = CHUNK_MS * 1_000_000 if audio else round(1e9 / stream.rate_hz)
    frames = (stream.sample_rate or 0) * CHUNK_MS // 1000
    with Publisher(endpoint, stream=stream.name, modality=stream.modality, frame_id=stream.frame_id) as pub:
        t0 = time.time_ns() if start_ns is None else start_ns
        k = 0
        while (time.time_ns() - t0) / 1e9 < seconds:
            due = t0 + (k + 1) * period_ns if audio else t0 + k * period_ns
            time.sleep(max(0.0, (due - time.time_ns()) / 1e9))
            now = time.time_ns()
            meta = {"stages": {INGEST_IN: now, INGEST_OUT: now}}
            if audio:
                n = np.arange(k * frames, (k + 1) * frames)
                chunk = (0.1 * np.sin(2 * np.pi * 440 * n / stream.sample_rate)).astype(np.float32)[:, None]
                meta["sample_rate"] = stream.sample_rate
                pub.publish(t0 + k * period_ns, {"samples": chunk}, meta=meta)
            else:
                arrays = {name: np.full(shape, k, np.float32) for name, shape in tensors.items()}
                pub.publish(due, arrays, meta=meta)
            k += 1


if __name__ == "__main__":
    main()
