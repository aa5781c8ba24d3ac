"""The inference node as a real process: a synchronizer (this test) sends sets, valid and not; the
node answers the valid ones and counts the rest once, by what happened to them."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from node_harness import Control, running, start_node, write_config

from fusion_pipeline.config import load_config
from fusion_pipeline.contract import default_contract
from fusion_pipeline.protocol import SET_MODALITY, SET_STREAM
from fusion_pipeline.transport import Publisher, Sample, Subscriber, encode, send_frames


def _set(seq: int) -> Sample:
    arrays = {
        name: np.zeros(shape, np.float32)
        for spec in default_contract().inputs
        for name, shape in spec.tensors.items()
    }
    return Sample(SET_STREAM, SET_MODALITY, seq, 10**18 + seq, arrays, "", {"presence": [1, 1, 1, 1]})


def test_a_set_its_socket_refused_is_counted_as_malformed_not_as_lost(tmp_path: Path) -> None:
    """Sets lost are the gaps in the synchronizer's numbering that a full queue made; one that came but
    was malformed is counted as that alone (its header gives its place)."""
    config_path = write_config(tmp_path / "c.toml", ["camera", "lidar", "radar", "audio"])
    config = load_config(config_path)
    control = Control(tmp_path)
    sets = Publisher(config.endpoint(config.sync.endpoint, tmp_path), SET_STREAM, SET_MODALITY)
    results = Subscriber(config.endpoint(config.output.endpoint, tmp_path), hwm=100)
    node = start_node("inference", config_path, tmp_path)
    try:
        with running(node):
            seq, deadline = 0, time.monotonic() + 30
            while results.recv(timeout_ms=100) is None:  # PUB/SUB slow joiners; the model's warm-up
                assert time.monotonic() < deadline and node.poll() is None, "no result within 30 s"
                sets.send(_set(seq))
                seq += 1
            time.sleep(0.5)  # the sets still on their way are taken
            control.poll()
            before = control.latest["inference"]
            taken = before["received"] + before["skipped"]
            truncated = encode(_set(seq))
            truncated[-1] = bytes(memoryview(truncated[-1]).cast("B")[:-1])  # one byte short
            send_frames(sets.socket, truncated)
            sets.send(_set(seq + 1))  # valid
            sets.send(_set(seq + 3))  # seq + 2 never sent: lost
            counters = control.wait_for(
                "inference", lambda c: c["received"] + c["skipped"] == taken + 2, timeout_s=10
            )
            assert counters.get("malformed_size_mismatch") == 1
            assert counters["sets_lost"] - before["sets_lost"] == 1
    finally:
        sets.close()
        results.close()
        control.close()
