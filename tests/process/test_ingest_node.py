"""The ingest node as a real process: a driver (this test) sends valid, mutated and malformed frames;
the node stays up, counts every bad one by reason in its heartbeats, tracks seq, applies the offset
and publishes preprocessed samples."""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import msgpack
import numpy as np
import pytest
from node_harness import Control, running, start_node, write_config
from PIL import Image

from fusion_pipeline.config import load_config
from fusion_pipeline.transport import Publisher, Sample, Subscriber, encode, send_frames

MS = 1_000_000
STAMP0 = 1_700_000_000_000_000_000
POINTS = np.column_stack([np.linspace(1, 60, 300), np.zeros(300), np.full(300, -1.0), np.ones(300)]).astype(
    np.float32
)


def _consumed(counters: dict) -> int:
    """Messages the node took off its socket: decoded, skipped or refused (drain-newest) or malformed."""
    malformed = sum(v for k, v in counters.items() if k.startswith("malformed_"))
    taken = ("received", "skipped", "refused")
    return sum(counters.get(k, 0) for k in taken) + malformed


class Rig:
    """One ingest node between a driver socket (ours) and an output subscriber (ours).

    After connecting, each message is sent only once the node's heartbeats show it took the one
    before: a node behind on a camera or lidar skips to the newest message, and this test wants
    every message looked at, however slow this shared machine is at the moment.
    """

    def __init__(self, run_dir: Path, config: Path, stream: str, control: Control) -> None:
        self.stream = load_config(config).stream(stream)
        self.config = load_config(config)
        self.control = control
        self.node = f"ingest:{stream}"
        self.expected: int | None = None  # messages the node has taken, once connected
        self.driver = Publisher(
            self.config.endpoint(self.stream.endpoint, run_dir), stream=stream, modality=self.stream.modality
        )
        self.out = Subscriber(self.config.ingest_endpoint(stream, run_dir), hwm=1000)

    def send(self, seq: int, arrays: dict[str, np.ndarray], meta: dict | None = None, **fields) -> None:
        sample = Sample(
            self.stream.name, self.stream.modality, seq, STAMP0 + seq * MS, arrays, "", meta or {}
        )
        for key, value in fields.items():
            setattr(sample, key, value)
        self.send_raw(encode(sample))

    def send_raw(self, frames: list) -> None:
        send_frames(self.driver.socket, frames)
        if self.expected is not None:
            self.expected += 1
            self.control.wait_for(self.node, lambda c: _consumed(c) >= self.expected)

    def connect(self, valid: dict[str, np.ndarray], meta: dict | None = None) -> int:
        """Send valid messages until one comes out (PUB/SUB slow joiners); return the last seq sent."""
        deadline = time.monotonic() + 10
        seq = 0
        while time.monotonic() < deadline:
            self.send(seq, valid, meta)
            if self.out.recv(timeout_ms=30) is not None:
                time.sleep(0.1)
                while self.out.recv(timeout_ms=50) is not None:
                    pass
                self._settle()
                return seq
            seq += 1
        raise AssertionError(f"{self.node}: no output within 10 s")

    def _settle(self) -> None:
        """Wait until two heartbeats 250 ms apart agree on what the node took (it beats every 100 ms)."""
        last = None
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            time.sleep(0.25)
            self.control.poll()
            now = _consumed(self.control.latest.get(self.node, {}))
            if now == last:
                self.expected = now
                return
            last = now
        raise AssertionError(f"{self.node}: heartbeats never settled")

    def outputs(self, count: int) -> list[Sample]:
        got = []
        while len(got) < count and (sample := self.out.recv(timeout_ms=3000)) is not None:
            got.append(sample)
        return got

    def close(self) -> None:
        self.out.close()
        self.driver.close()


@pytest.fixture
def control(ipc_dir: Path) -> Iterator[Control]:
    control = Control(ipc_dir)
    yield control
    control.close()


def _raw_header(stream: str, **overrides) -> bytes:
    header = {"v": 1, "stream": stream, "modality": "lidar", "seq": 0, "stamp_ns": 1, "frame_id": ""}
    header |= {"meta": {}, "arrays": [{"name": "points", "dtype": "<f4", "shape": [2, 4]}]}
    return msgpack.packb(header | overrides)


def test_lidar_ingest_counts_bad_frames_tracks_seq_and_applies_offset(
    ipc_dir: Path, control: Control
) -> None:
    config = write_config(ipc_dir / "c.toml", ["lidar"], {"lidar": "offset_ms = 5\n"})
    rig = Rig(ipc_dir, config, "lidar/top", control)
    node = start_node("ingest", config, ipc_dir, "--stream", "lidar/top")
    with running(node):
        last = rig.connect({"points": POINTS})
        before = dict(control.latest[rig.node])  # settled by connect()
        topic = b"lidar/top"
        # Malformed on the wire: bad msgpack, an unknown version, a buffer shorter than declared.
        rig.send_raw([topic, b"\xc1\x00"])
        rig.send_raw([topic, _raw_header("lidar/top", v=2), bytes(32)])
        rig.send_raw([topic, _raw_header("lidar/top"), bytes(31)])
        rig.send(last + 1, {"points": POINTS})  # valid
        rig.send(last + 1, {"points": POINTS})  # duplicate
        rig.send(last, {"points": POINTS})  # out of order
        rig.send(last + 2, {"points": POINTS[:, :3].copy()})  # schema: N x 3
        rig.send(last + 3, {"cloud": POINTS})  # schema: no "points"
        rig.send(last + 4, {"points": POINTS}, modality="radar")  # this stream's seq, another modality
        rig.send(last + 7, {"points": POINTS})  # valid after a gap of 2 (last + 4 used up its seq)
        rig.send(last + 8, {"points": POINTS * 0.5})  # valid
        # Malformed after its header (too short), seq 9: counted as malformed, not lost upstream too.
        rig.send_raw([topic, _raw_header("lidar/top", seq=last + 9), bytes(31)])
        rig.send(last + 10, {"points": POINTS})  # valid
        outs = rig.outputs(4)
        kept = (last + 1, last + 7, last + 8, last + 10)
        assert [o.meta["source_seq"] for o in outs] == list(kept)
        assert [o.stamp_ns for o in outs] == [STAMP0 + s * MS - 5 * MS for s in kept]
        assert all(
            o.arrays["lidar"].shape == (3, 64, 64) and o.arrays["lidar"].dtype == np.float32 for o in outs
        )
        assert outs[0].arrays["lidar"].max() > 0 and [o.seq for o in outs] == [
            outs[0].seq + i for i in range(4)
        ]
        assert 0 < outs[0].meta["stages"]["ingest_in"] <= outs[0].meta["stages"]["ingest_out"]

        expected = {
            "malformed_bad_encoding": 1,
            "malformed_unknown_version": 1,
            "malformed_size_mismatch": 2,
            "duplicates": 1,
            "out_of_order": 1,
            "schema_bad_shape": 1,
            "schema_missing_array": 1,
            "schema_wrong_modality": 1,
            "seq_gaps": 1,
            "seq_lost": 2,
            "published": 4,
        }

        def delta(c: dict) -> dict:
            return {k: c.get(k, 0) - before.get(k, 0) for k in expected}

        counters = control.wait_for(rig.node, lambda c: delta(c) == expected)
        assert counters["restarts"] == 0

        # The driver restarts after a silence longer than the restart timeout (0.5 s at 10 Hz): seq 0 is new.
        time.sleep(0.7)
        rig.send(0, {"points": POINTS})
        (restarted,) = rig.outputs(1)
        assert restarted.meta["source_seq"] == 0 and restarted.seq == outs[-1].seq + 1
        control.wait_for(
            rig.node, lambda c: c["restarts"] == 1 and c["out_of_order"] == before["out_of_order"] + 1
        )
        assert node.poll() is None, "the node died"
        rig.close()
        node.terminate()
        assert node.wait(5) == 0


def _jpeg(image: np.ndarray) -> np.ndarray:
    out = io.BytesIO()
    Image.fromarray(image).save(out, format="JPEG")
    return np.frombuffer(out.getvalue(), np.uint8)


def test_camera_and_audio_ingest_decode_convert_and_refuse(ipc_dir: Path, control: Control) -> None:
    config = write_config(ipc_dir / "c.toml", ["camera", "audio"])
    camera = Rig(ipc_dir, config, "camera/front", control)
    audio = Rig(ipc_dir, config, "audio/roof", control)
    nodes = [start_node("ingest", config, ipc_dir, "--stream", s) for s in ("camera/front", "audio/roof")]
    image = np.zeros((240, 320, 3), np.uint8)
    image[:, 160:] = 255  # right half white
    rgb8 = {"encoding": "rgb8"}
    with running(*nodes):
        c = camera.connect({"image": image}, rgb8)
        a = audio.connect({"samples": np.zeros((320, 1), np.int16)}, {"sample_rate": 16000})
        camera.send(c + 1, {"jpeg": _jpeg(image)}, {"encoding": "jpeg"})
        camera.send(c + 2, {"jpeg": _jpeg(image)[:200]}, {"encoding": "jpeg"})  # truncated
        camera.send(c + 3, {"image": image}, {"encoding": "yuv422"})
        camera.send(c + 4, {"image": image[:50, :50].copy()}, rgb8)  # smaller than the model input
        camera.send(c + 5, {"image": image}, rgb8)
        pcm = np.array([[16384], [-16384]] * 160, np.int16)
        audio.send(a + 1, {"samples": pcm}, {"sample_rate": 16000})
        audio.send(a + 2, {"samples": pcm}, {"sample_rate": 44100})
        audio.send(a + 3, {"samples": np.full((320, 1), np.inf, np.float32)}, {"sample_rate": 16000})
        audio.send(a + 4, {"samples": pcm.astype(np.float32) / 32768}, {"sample_rate": 16000})

        jpeg_out, rgb_out = camera.outputs(2)
        assert [o.meta["source_seq"] for o in (jpeg_out, rgb_out)] == [c + 1, c + 5]
        for out in (jpeg_out, rgb_out):
            frame = out.arrays["camera"]
            assert frame.shape == (3, 96, 128) and frame.dtype == np.float32
            assert frame[:, :, 70:].mean() > frame[:, :, :58].mean() + 2  # white right half, normalised
        np.testing.assert_allclose(jpeg_out.arrays["camera"], rgb_out.arrays["camera"], atol=0.15)

        int16_out, float_out = audio.outputs(2)
        for out in (int16_out, float_out):
            assert out.arrays["samples"].dtype == np.float32 and out.arrays["samples"].shape == (320, 1)
            assert out.meta["sample_rate"] == 16000
            np.testing.assert_array_equal(out.arrays["samples"][:2, 0], [0.5, -0.5])

        control.wait_for(
            camera.node,
            lambda k: (
                (k.get("schema_bad_jpeg"), k.get("schema_unsupported_encoding"), k.get("schema_preprocess"))
                == (1, 1, 1)
            ),
        )
        control.wait_for(
            audio.node, lambda k: (k.get("schema_sample_rate_mismatch"), k.get("schema_non_finite")) == (1, 1)
        )
        assert all(n.poll() is None for n in nodes), "a node died"
        camera.close()
        audio.close()


DETECTIONS = np.array([[12.5, -1.0, 0.25, -3.5, 10.0]], np.float32)


def _delta(before: dict, keys: list[str]) -> Callable[[dict], dict]:
    return lambda c: {k: c.get(k, 0) - before.get(k, 0) for k in keys}


def test_a_forged_high_seq_does_not_block_the_real_radar_driver(ipc_dir: Path, control: Control) -> None:
    config = write_config(ipc_dir / "c.toml", ["radar"])
    rig = Rig(ipc_dir, config, "radar/front", control)
    node = start_node("ingest", config, ipc_dir, "--stream", "radar/front")
    with running(node):
        last = rig.connect({"detections": DETECTIONS})
        before = dict(control.latest[rig.node])
        real = list(range(last + 1, last + 22))
        for i, seq in enumerate(real[:20]):  # forged and real messages interleaved on one endpoint
            rig.send(2**40 + i, {"detections": DETECTIONS}, stamp_ns=STAMP0 + seq * MS)  # a plausible stamp
            rig.send(seq, {"detections": DETECTIONS})
        time.sleep(0.3)  # a pause of the real driver, shorter than its restart timeout (0.5 s)
        rig.send(2**40 + 100, {"detections": DETECTIONS}, stamp_ns=STAMP0 + real[20] * MS)
        rig.send(real[20], {"detections": DETECTIONS})
        outs = rig.outputs(len(real))
        assert [o.meta["source_seq"] for o in outs] == real
        keys = ["seq_jumps", "seq_lost", "seq_gaps", "out_of_order", "restarts", "published"]
        expected = {"seq_jumps": 21, "seq_lost": 0, "seq_gaps": 0, "out_of_order": 0, "restarts": 0}
        control.wait_for(rig.node, lambda c: _delta(before, keys)(c) == expected | {"published": 21})
        assert node.poll() is None, "the node died"
        rig.close()


def test_bad_stamps_and_non_finite_values_are_dropped_by_reason(ipc_dir: Path, control: Control) -> None:
    config = write_config(ipc_dir / "c.toml", ["radar"], {"radar": "max_stamp_ahead_ms = 2000\n"})
    rig = Rig(ipc_dir, config, "radar/front", control)
    node = start_node("ingest", config, ipc_dir, "--stream", "radar/front")
    with running(node):
        last = rig.connect({"detections": DETECTIONS})
        before = dict(control.latest[rig.node])
        years = 3 * 365 * 24 * 3600 * 10**9
        rig.send(last + 1, {"detections": DETECTIONS}, stamp_ns=-1)
        rig.send(last + 2, {"detections": DETECTIONS}, stamp_ns=time.time_ns() + years)

        # From here the driver's clock runs 1 s ahead: within max_stamp_ahead_ms, so its stamps are taken.
        def ahead() -> int:
            return time.time_ns() + 1000 * MS

        rig.send(last + 3, {"detections": DETECTIONS}, stamp_ns=ahead())
        rig.send(last + 4, {"detections": np.full((2, 5), np.nan, np.float32)}, stamp_ns=ahead())
        inf = np.where(np.eye(1, 5, dtype=bool), np.inf, DETECTIONS)
        rig.send(last + 5, {"detections": inf}, stamp_ns=ahead())
        rig.send(last + 6, {"detections": DETECTIONS}, stamp_ns=ahead())
        assert [o.meta["source_seq"] for o in rig.outputs(2)] == [last + 3, last + 6]
        keys = ["schema_negative_stamp", "schema_future_stamp", "schema_non_finite", "seq_lost"]
        expected = dict(zip(keys, (1, 1, 2, 0), strict=True))
        control.wait_for(rig.node, lambda c: _delta(before, keys)(c) == expected)
        rig.close()
