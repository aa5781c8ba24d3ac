"""Ingest logic without sockets: schema checks, seq tracking (PROTOCOL.md section 7), offset, output."""

from __future__ import annotations

import io
import sys
from dataclasses import replace

import numpy as np
import pytest
from paths import ROOT
from PIL import Image

from fusion_pipeline.binding import bind
from fusion_pipeline.config import parse_config
from fusion_pipeline.contract import InputSpec, ModelContract, default_contract
from fusion_pipeline.errors import SchemaError
from fusion_pipeline.ingest import (
    SCHEMA_REASONS,
    Ingest,
    SeqTracker,
    check_payload,
    decode_jpeg,
    restart_timeout_ns,
)
from fusion_pipeline.preprocess import CameraParams, LidarParams, preprocess_camera, preprocess_lidar
from fusion_pipeline.protocol import SeqGaps, SeqMark
from fusion_pipeline.transport import Checked, Limits, Sample, check, decode, encode

# The tools are scripts run as `python tools/NAME.py` (their folder on sys.path), not a package.
sys.path.insert(0, str(ROOT / "tools"))

from preprocess_reference import decode_jpeg_pillow  # noqa: E402

MS = 1_000_000
CONFIG = parse_config(
    """
[[streams]]
name = "camera/front"
modality = "camera"
endpoint = "ipc:///x/c.sock"
rate_hz = 30
offset_ms = 12.5
[[streams]]
name = "lidar/top"
modality = "lidar"
endpoint = "ipc:///x/l.sock"
rate_hz = 10
frame_id = "lidar_top"
[[streams]]
name = "radar/front"
modality = "radar"
endpoint = "ipc:///x/r.sock"
rate_hz = 20
[[streams]]
name = "audio/roof"
modality = "audio"
endpoint = "ipc:///x/a.sock"
rate_hz = 50
sample_rate = 16000
[sync]
reference = "lidar/top"
"""
)
BINDINGS = bind(CONFIG, default_contract())
RNG = np.random.default_rng(3)
IMAGE = RNG.integers(0, 256, (120, 160, 3), dtype=np.uint8)
# JPEG is lossy and noise is its worst case: the jpeg tests use a smooth image.
_Y, _X = np.mgrid[0:120, 0:160]
SMOOTH = np.stack([_X * 255 // 159, _Y * 255 // 119, (_X + _Y) * 255 // 278], axis=-1).astype(np.uint8)
POINTS = np.column_stack([RNG.uniform(0, 60, (500, 3)), RNG.uniform(0, 1, 500)]).astype(np.float32)


def _sample(
    stream: str, seq: int = 0, stamp_ns: int = 100 * MS, meta: dict | None = None, **arrays: np.ndarray
) -> Sample:
    modality = CONFIG.stream(stream).modality
    # Through the real codec, so arrays are the read-only frame views ingest sees in the node.
    return decode(encode(Sample(stream, modality, seq, stamp_ns, arrays, "", meta or {})))


def _jpeg(image: np.ndarray) -> np.ndarray:
    out = io.BytesIO()
    Image.fromarray(image).save(out, format="JPEG", quality=95)
    return np.frombuffer(out.getvalue(), np.uint8)


def test_valid_samples_of_every_modality_come_out_as_contract_inputs() -> None:
    cases = {
        "camera/front": _sample("camera/front", meta={"encoding": "rgb8"}, image=IMAGE),
        "lidar/top": _sample("lidar/top", points=POINTS),
        "radar/front": _sample("radar/front", detections=np.ones((3, 5), np.float32)),
    }
    for stream, sample in cases.items():
        out = Ingest(BINDINGS.of(stream)).process(sample, arrival_ns=5)
        assert out is not None
        assert {k: v.shape for k, v in out.arrays.items()} == BINDINGS.of(stream).input.tensors
        assert all(v.dtype == np.float32 for v in out.arrays.values())
        assert out.meta["stages"] == {"ingest_in": 5} and out.meta["source_seq"] == 0
    lidar = Ingest(BINDINGS.of("lidar/top")).process(cases["lidar/top"], 0)
    np.testing.assert_array_equal(lidar.arrays["lidar"], preprocess_lidar(POINTS))
    assert lidar.frame_id == "lidar_top"  # the driver left it empty: the config's


def test_ingest_runs_the_front_end_of_the_input_its_stream_is_bound_to() -> None:
    """A model that wants 224x224 camera frames and a half-metre lidar grid gets them from the same
    preprocessing functions, called with its contract's parameters."""
    camera = CameraParams(size_hw=(224, 224), layout="HWC")
    lidar = LidarParams(x_range_m=(0.0, 32.0), cell_m=0.5)  # 64 rows of 128 cells
    contract = ModelContract(
        (
            InputSpec("wide", "camera", camera.shape, camera.to_dict()),
            InputSpec("bev", "lidar", lidar.shape, lidar.to_dict()),
        ),
        default_contract().outputs,
        presence_order=("wide", "bev"),
    )
    config = CONFIG.model_copy(update={"streams": CONFIG.streams[:2]})
    bindings = bind(config, contract)
    image = np.random.default_rng(9).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    out = Ingest(bindings.of("camera/front")).process(_sample("camera/front", image=image), 0)
    assert out is not None and list(out.arrays) == ["wide"]
    assert out.arrays["wide"].shape == (224, 224, 3)
    np.testing.assert_array_equal(out.arrays["wide"], preprocess_camera(image, camera))
    out = Ingest(bindings.of("lidar/top")).process(_sample("lidar/top", points=POINTS), 0)
    assert out is not None and out.arrays["bev"].shape == (3, 64, 128)
    np.testing.assert_array_equal(out.arrays["bev"], preprocess_lidar(POINTS, lidar))


def test_offset_is_subtracted_and_ingest_numbers_its_own_output() -> None:
    ingest = Ingest(BINDINGS.of("camera/front"))
    outs = [
        ingest.process(_sample("camera/front", seq=40 + i, stamp_ns=10**18 + i, image=IMAGE), 10**18)
        for i in range(3)
    ]
    assert [o.stamp_ns for o in outs] == [10**18 + i - 12_500_000 for i in range(3)]
    assert [o.seq for o in outs] == [0, 1, 2]
    assert [o.meta["source_seq"] for o in outs] == [40, 41, 42]


def test_the_lag_of_the_latest_messages_is_counted_with_the_offset_subtracted() -> None:
    """Arrival minus stamp (offset subtracted) over the latest LAG_WINDOW messages: its minimum goes
    negative for a sensor clock ahead of the ingest host's, which status names (ops.health)."""
    ingest = Ingest(BINDINGS.of("radar/front"))
    assert "lag_ms_min" not in ingest.counters()  # nothing arrived: no figure, not a zero
    detections = np.zeros((3, 5), np.float32)
    t0 = 10**18
    # 80 messages, 50 ms apart, arriving 2..81 ms after their stamps: the window keeps the last 64.
    for i in range(80):
        stamp = t0 + i * 50 * MS
        assert ingest.process(_sample("radar/front", i, stamp, detections=detections), stamp + (2 + i) * MS)
    counters = ingest.counters()
    assert (counters["lag_ms_min"], counters["lag_ms_median"]) == (18.0, 50.0)
    # The camera's 12.5 ms offset is subtracted from its stamps: a frame arriving 2 ms after its stamp
    # lags 14.5 ms; one stamped 10 ms after it arrived, -10 + 12.5.
    camera = Ingest(BINDINGS.of("camera/front"))
    camera.process(_sample("camera/front", 0, t0, image=IMAGE), t0 + 2 * MS)
    camera.process(_sample("camera/front", 1, t0 + 40 * MS, image=IMAGE), t0 + 30 * MS)
    assert camera.counters()["lag_ms_min"] == 2.5


def test_jpeg_camera_frames_are_decoded_and_bad_ones_counted() -> None:
    ingest = Ingest(BINDINGS.of("camera/front"))
    data = _jpeg(SMOOTH)
    out = ingest.process(_sample("camera/front", 0, meta={"encoding": "jpeg"}, jpeg=data), 0)
    assert out is not None
    # Decoded, then the same preprocessing as rgb8: near the original (JPEG is lossy), far from noise.
    assert np.abs(out.arrays["camera"] - preprocess_camera(SMOOTH)).max() < 0.1
    assert np.abs(out.arrays["camera"] - preprocess_camera(IMAGE)).mean() > 0.5
    truncated = data[: len(data) // 2]
    png = io.BytesIO()
    Image.fromarray(IMAGE).save(png, format="PNG")
    for seq, payload in enumerate(
        [truncated, np.frombuffer(png.getvalue(), np.uint8), np.full(100, 7, np.uint8)], 1
    ):
        assert (
            ingest.process(_sample("camera/front", seq, meta={"encoding": "jpeg"}, jpeg=payload), 0) is None
        )
    assert ingest.rejected == {"bad_jpeg": 3}


def test_jpeg_decodes_to_the_pixels_pillow_gave_and_keeps_its_header_orientation() -> None:
    """OpenCV decodes (colour, greyscale, noise at two qualities) to Pillow's RGB values bit for bit; an EXIF
    orientation tag (6: rotate 90 degrees) is not applied, as Pillow did not, so the size is the header's."""
    files = [_jpeg(SMOOTH), _jpeg(IMAGE)]
    for image, options in ((IMAGE, {"quality": 60}), (SMOOTH[..., 0], {}), (SMOOTH, {"exif": _rotated()})):
        out = io.BytesIO()
        Image.fromarray(image).save(out, format="JPEG", **options)
        files.append(np.frombuffer(out.getvalue(), np.uint8))
    for data in files:
        rgb = decode_jpeg(data, "camera/front", 1 << 20)
        assert rgb.shape == (120, 160, 3) and rgb.dtype == np.uint8
        np.testing.assert_array_equal(rgb, decode_jpeg_pillow(data))


def _rotated() -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: the camera was turned; a viewer would rotate the image 90 degrees
    return exif


def test_a_jpeg_header_declaring_a_huge_image_is_refused_before_decoding() -> None:
    big = _jpeg(np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(SchemaError) as err:
        check_payload(
            _sample("camera/front", meta={"encoding": "jpeg"}, jpeg=big),
            CONFIG.stream("camera/front"),
            Limits(max_array_bytes=64 * 64 * 3 - 1),
        )
    assert err.value.reason == "bad_jpeg" and "limit" in str(err.value)


@pytest.mark.parametrize(
    ("stream", "meta", "arrays", "reason"),
    [
        ("camera/front", {"encoding": "bgr8"}, {"image": IMAGE}, "unsupported_encoding"),
        ("camera/front", {"encoding": 3}, {"image": IMAGE}, "bad_meta"),
        ("camera/front", {}, {"img": IMAGE}, "missing_array"),
        ("camera/front", {}, {"image": IMAGE[..., :2].copy()}, "bad_shape"),
        ("camera/front", {}, {"image": IMAGE.astype(np.uint16)}, "bad_dtype"),
        ("camera/front", {}, {"image": IMAGE[:40, :40].copy()}, "preprocess"),  # smaller than the model
        ("lidar/top", {}, {"points": POINTS[:, :3].copy()}, "bad_shape"),
        ("lidar/top", {}, {"points": POINTS.astype(np.float64)}, "bad_dtype"),
        ("lidar/top", {}, {"points": POINTS[None]}, "bad_shape"),
        ("radar/front", {}, {"points": POINTS}, "missing_array"),
        ("audio/roof", {"sample_rate": 16000}, {"samples": np.zeros((0, 1), np.float32)}, "bad_shape"),
        ("audio/roof", {"sample_rate": 16000}, {"samples": np.zeros((5, 0), np.float32)}, "bad_shape"),
        ("audio/roof", {"sample_rate": 16000}, {"samples": np.zeros(5, np.float32)}, "bad_shape"),
        (
            "audio/roof",
            {"sample_rate": 48000},
            {"samples": np.zeros((5, 1), np.float32)},
            "sample_rate_mismatch",
        ),
        ("audio/roof", {}, {"samples": np.zeros((5, 1), np.float32)}, "bad_meta"),
        ("audio/roof", {"sample_rate": "16k"}, {"samples": np.zeros((5, 1), np.float32)}, "bad_meta"),
        (
            "audio/roof",
            {"sample_rate": 16000},
            {"samples": np.full((5, 1), np.nan, np.float32)},
            "non_finite",
        ),
        ("audio/roof", {"sample_rate": 16000}, {"samples": np.zeros((5, 1), np.int32)}, "bad_dtype"),
        ("lidar/top", {}, {"points": np.where(POINTS > 50, np.nan, POINTS)}, "non_finite"),
        ("lidar/top", {}, {"points": np.where(POINTS > 50, -np.inf, POINTS)}, "non_finite"),
        ("radar/front", {}, {"detections": np.full((3, 5), np.inf, np.float32)}, "non_finite"),
    ],
)
def test_schema_violations_are_counted_by_reason(stream: str, meta: dict, arrays: dict, reason: str) -> None:
    assert reason in SCHEMA_REASONS
    ingest = Ingest(BINDINGS.of(stream))
    assert ingest.process(_sample(stream, meta=meta, **arrays), 0) is None
    assert ingest.counters()[f"schema_{reason}"] == 1 and ingest.produced == 0
    assert ingest.last_error  # says what was wrong


def test_wrong_stream_and_modality_are_refused() -> None:
    ingest = Ingest(BINDINGS.of("lidar/top"))
    other = decode(encode(Sample("lidar/top_rear", "lidar", 0, 1, {"points": POINTS})))
    assert ingest.process(other, 0) is None
    assert ingest.seq.last_seq is None  # another stream's message: no effect on this one's seq tracking
    # This stream's message, of the wrong modality: refused after its header was read, it uses up its
    # seq (PROTOCOL 7), so the next one counts no gap: it was counted both dropped and lost upstream.
    radar = decode(encode(Sample("lidar/top", "radar", 0, 1, {"points": POINTS})))
    assert ingest.process(radar, 0) is None
    assert ingest.process(_sample("lidar/top", seq=1, points=POINTS), 0) is not None
    assert ingest.rejected == {"wrong_stream": 1, "wrong_modality": 1}
    assert ingest.seq.counters()["seq_lost"] == 0


def test_the_first_message_refused_for_each_reason_is_said_with_why(caplog: pytest.LogCaptureFixture) -> None:
    """An offline replay said only "schema_preprocess 20" where the ingest node said why (its own loop
    logged the first of each reason): the stage itself says it now, wherever it runs."""
    ingest = Ingest(BINDINGS.of("lidar/top"))
    for seq in range(3):
        ingest.process(
            _sample("lidar/top", seq=seq, stamp_ns=(seq + 1) * 100 * MS, points=POINTS[:, :3].copy()), 0
        )
    ingest.process(_sample("lidar/top", seq=3, stamp_ns=-1, points=POINTS), 0)
    said = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(said) == 2 and ingest.rejected["bad_shape"] == 3
    assert said[0].startswith(
        "dropping a message of lidar/top (schema_bad_shape, further ones only counted):"
    )
    assert "schema_negative_stamp" in said[1] and "minus the offset is negative" in said[1]


def test_audio_int16_becomes_float32_and_float_chunks_are_owned() -> None:
    ingest = Ingest(BINDINGS.of("audio/roof"))
    pcm = np.array([[-32768, 0], [16384, 32767]], np.int16)
    out = ingest.process(_sample("audio/roof", 0, meta={"sample_rate": 16000}, samples=pcm), 0)
    np.testing.assert_array_equal(out.arrays["samples"], [[-1.0, 0.0], [0.5, 32767 / 32768]])
    assert out.arrays["samples"].dtype == np.float32 and out.meta["sample_rate"] == 16000
    chunk = np.linspace(-1, 1, 8, dtype=np.float32)[:, None]
    out = ingest.process(_sample("audio/roof", 1, meta={"sample_rate": 16000}, samples=chunk), 0)
    np.testing.assert_array_equal(out.arrays["samples"], chunk)
    assert out.arrays["samples"].flags.writeable  # a copy, not a view of the receive buffer


def _arrive(tracker: SeqTracker, seq: int, now_ns: int, stamp_ns: int) -> bool:
    """A message through `tracker` as ingest passes it: accepted, then its stamp (which passes ingest's
    stamp checks here) marked checked."""
    accepted = tracker.accept(seq, now_ns, stamp_ns)
    if accepted:
        tracker.stamped(stamp_ns, now_ns)
    return accepted


def _on_time(tracker: SeqTracker, seq: int, now_ns: int) -> bool:
    """A message that arrives at its stamp."""
    return _arrive(tracker, seq, now_ns, now_ns)


def test_seq_gaps_duplicates_and_out_of_order() -> None:
    tracker = SeqTracker(500 * MS, rate_hz=20)
    arrivals = [(5, 0), (6, 1), (6, 2), (4, 3), (10, 4), (11, 5), (9, 6), (14, 7), (14, 8)]
    used = [seq for seq, t in arrivals if _on_time(tracker, seq, t * MS)]
    assert used == [5, 6, 10, 11, 14]
    assert tracker.counters() == {
        "seq_gaps": 2,
        "seq_lost": 3 + 2,  # 7, 8, 9 and 12, 13
        "duplicates": 2,
        "out_of_order": 2,
        "seq_jumps": 0,
        "restarts": 0,
    }


def test_a_driver_restart_after_silence_resets_tracking() -> None:
    tracker = SeqTracker(500 * MS, rate_hz=20)
    for seq in range(100, 110):
        assert _on_time(tracker, seq, seq * MS)
    assert not _on_time(tracker, 0, 109 * MS + 500 * MS)  # not silent long enough: an old message
    assert _on_time(tracker, 0, 109 * MS + 501 * MS)  # silent past the timeout: a restarted driver
    assert _on_time(tracker, 1, 700 * MS) and tracker.last_seq == 1
    assert tracker.counters()["restarts"] == 1 and tracker.counters()["out_of_order"] == 1
    assert tracker.counters()["seq_gaps"] == 0


def test_silence_is_measured_from_the_last_accepted_message() -> None:
    """A quick restart (new seq below the old) recovers one timeout after the last accepted message,
    however many of its messages arrived in between."""
    tracker = SeqTracker(500 * MS, rate_hz=20)
    assert _on_time(tracker, 1000, 0)
    assert [_on_time(tracker, s, s * 100 * MS) for s in range(7)] == [False] * 6 + [True]  # 600 ms > 500
    assert tracker.counters()["restarts"] == 1 and tracker.counters()["out_of_order"] == 6


def test_a_restarted_node_resumes_its_predecessors_sequence_and_counts_what_it_missed() -> None:
    """A killed ingest's successor started afresh: the messages the driver sent while no process
    listened were counted nowhere. Resumed from the predecessor's last_seq, they are a gap."""

    def radar(seq: int) -> Sample:
        return _sample("radar/front", seq, seq * 50 * MS, detections=np.ones((3, 5), np.float32))

    before = Ingest(BINDINGS.of("radar/front"))
    for seq in (40, 41, 42):
        assert before.process(radar(seq), seq * 50 * MS) is not None
    last = before.counters()["last_seq"]
    assert last == [42, 42 * 50 * MS]
    after = Ingest(BINDINGS.of("radar/front"))
    after.seq.resume(SeqMark(*last))
    # 1.5 s later (a restart's backoff and start-up): 30 messages of 20 Hz went unheard.
    assert after.process(radar(73), 42 * 50 * MS + 1550 * MS) is not None
    assert after.counters()["seq_gaps"] == 1 and after.counters()["seq_lost"] == 30
    # A driver that restarted meanwhile (its seq below the resumed one) is taken at once, even on a
    # stream whose restart timeout outlasts the node's restart: its first frames were dropped.
    slow = SeqTracker(restart_timeout_ns(1.0), rate_hz=1.0)  # 5 s
    slow.resume(SeqMark(100, 0))
    assert [_on_time(slow, seq, 1500 * MS + seq * 1000 * MS) for seq in range(3)] == [True] * 3
    assert slow.counters()["restarts"] == 1 and slow.counters()["out_of_order"] == 0
    # Without it, the same message starts a fresh sequence and nothing is counted.
    fresh = Ingest(BINDINGS.of("radar/front"))
    assert fresh.process(radar(73), 73 * 50 * MS) is not None
    assert fresh.counters()["seq_lost"] == 0


def test_restart_timeout_follows_the_stream_rate() -> None:
    assert restart_timeout_ns(30.0) == 500 * MS  # the floor
    assert restart_timeout_ns(2.0) == 2500 * MS  # five periods


def test_duplicates_are_dropped_before_any_decoding_work() -> None:
    ingest = Ingest(BINDINGS.of("camera/front"))
    good = _sample("camera/front", 7, meta={"encoding": "jpeg"}, jpeg=_jpeg(IMAGE))
    assert ingest.process(good, 0) is not None
    bad_dup = _sample("camera/front", 7, meta={"encoding": "jpeg"}, jpeg=np.zeros(4, np.uint8))
    assert ingest.process(bad_dup, 1) is None
    assert ingest.counters()["duplicates"] == 1 and not ingest.rejected


def test_only_discrete_streams_may_drain_to_the_newest_message() -> None:
    drain = {name: Ingest(binding).drain_newest for name, binding in BINDINGS.by_stream.items()}
    assert drain == {"camera/front": True, "lidar/top": True, "radar/front": True, "audio/roof": False}
    # A node that drains admits every message in order and finishes the newest: nothing counted lost.
    ingest = Ingest(BINDINGS.of("lidar/top"))
    drained = [
        check(encode(Sample("lidar/top", "lidar", seq, 100 * MS, {"points": POINTS}))) for seq in range(6)
    ]
    assert all(ingest.admit(message, 0) for message in drained)
    assert ingest.finish(drained[-1].materialize(), 1) is not None
    assert ingest.counters()["seq_lost"] == 0 and ingest.produced == 1


def _real_then(tracker: SeqTracker, count: int, start_ms: int = 0) -> int:
    """The real driver: seq 0.. at 20 Hz from start_ms; the time (ms) of its last message."""
    for seq in range(count):
        assert _on_time(tracker, seq, (start_ms + 50 * seq) * MS)
    return start_ms + 50 * (count - 1)


def test_a_forged_high_seq_cannot_capture_a_live_stream() -> None:
    tracker = SeqTracker(500 * MS, rate_hz=20)
    t = _real_then(tracker, 10)
    # 20 forged messages, 2**40 + i, in bursts and one by one, while the real driver goes on.
    real = 10
    for i in range(20):
        t += 50
        assert not _on_time(tracker, 2**40 + i, t * MS)
        if i % 4 == 3:  # a burst of four forged messages between two real ones
            assert _on_time(tracker, real, t * MS)
            real += 1
    # ... and one every 0.4 s after the real driver went quiet for less than the restart timeout.
    assert not _on_time(tracker, 2**40 + 50, (t + 400) * MS)
    assert _on_time(tracker, real, (t + 450) * MS)
    assert tracker.counters() == {
        "seq_gaps": 0,
        "seq_lost": 0,  # no impossible gap counted
        "duplicates": 0,
        "out_of_order": 0,
        "seq_jumps": 21,
        "restarts": 0,
    }


def test_a_jump_that_persists_after_the_old_sequence_went_silent_is_a_restart() -> None:
    tracker = SeqTracker(500 * MS, rate_hz=20)
    t = _real_then(tracker, 10)
    # A restarted driver that numbers from a high value: not taken while the old one may still talk ...
    assert [_on_time(tracker, 10**9 + i, (t + 100 + 50 * i) * MS) for i in range(3)] == [False] * 3
    # ... nor after the silence without JUMP_CONFIRM consecutive messages (one broke the run) ...
    assert not _on_time(tracker, 5 * 10**9, (t + 600) * MS)
    assert not _on_time(tracker, 10**9 + 4, (t + 650) * MS)
    assert not _on_time(tracker, 10**9 + 5, (t + 700) * MS)
    # ... but once it persists and the old sequence has been silent for the restart timeout.
    assert _on_time(tracker, 10**9 + 6, (t + 750) * MS) and tracker.last_seq == 10**9 + 6
    assert _on_time(tracker, 10**9 + 7, (t + 800) * MS)
    counters = tracker.counters()
    assert (counters["restarts"], counters["seq_jumps"], counters["seq_lost"]) == (1, 6, 0)


@pytest.mark.parametrize("held", [1, 2, 3])
def test_a_driver_stopped_and_woken_is_a_gap_not_a_jump(held: int) -> None:
    """A driver stopped for 3.5 s sends the frames it held on waking, then skips to the current capture:
    measured from the held frames, which had just arrived, the skip looked forged (10 frames of 0.5 s
    dropped as seq_jumps, nothing counted lost)."""
    tracker = SeqTracker(500 * MS, rate_hz=20)
    t = _real_then(tracker, 10)
    woken = t + 3500
    assert all(_on_time(tracker, seq, woken * MS) for seq in range(10, 10 + held))  # the held frames
    assert all(_on_time(tracker, seq, (woken + 1 + 50 * (seq - 80)) * MS) for seq in range(80, 90))
    counters = tracker.counters()
    assert (counters["seq_jumps"], counters["seq_gaps"], counters["seq_lost"]) == (0, 1, 70 - held)


def test_a_receiver_woken_from_a_stall_finds_a_gap_after_its_queue_not_a_jump() -> None:
    """A receiver stalled for 2 s (a SIGSTOP, a host too busy to run it) takes the 16 frames its queue held,
    stamped before the stall, then the frames after those its sender dropped meanwhile: measured from
    arrivals, which came together, the skip looked forged (a third of a second of real frames dropped
    as seq_jumps, nothing counted lost)."""
    tracker = SeqTracker(500 * MS, rate_hz=20)
    t = _real_then(tracker, 10)
    woken = t + 2000
    assert all(_arrive(tracker, seq, woken * MS, (t + 50 * (seq - 9)) * MS) for seq in range(10, 26))
    assert all(
        _arrive(tracker, seq, (woken + 1 + 50 * (seq - 50)) * MS, (woken + 50 * (seq - 50)) * MS)
        for seq in range(50, 60)
    )
    counters = tracker.counters()
    assert (counters["seq_jumps"], counters["seq_gaps"], counters["seq_lost"]) == (0, 1, 24)


@pytest.mark.parametrize("delay_ms", [0, 3_600_000])
def test_a_forged_stamp_makes_no_jump_plausible(delay_ms: int) -> None:
    """A forged seq stamped at the clock, or far ahead of it, is still a jump: the stamp counts no later
    than the clock minus the stream's usual delay (here 0, then a driver clock an hour behind)."""
    tracker = SeqTracker(500 * MS, rate_hz=20)
    for seq in range(10):
        assert _arrive(tracker, seq, 50 * seq * MS, (50 * seq - delay_ms) * MS)
    now = 500 * MS
    assert not _arrive(tracker, 10**6, now, now)
    assert not _arrive(tracker, 10**6 + 1, now, 2**62)
    assert _arrive(tracker, 10, now, now - delay_ms * MS)
    assert tracker.counters()["seq_jumps"] == 2 and tracker.counters()["seq_lost"] == 0


def test_a_refused_stamp_does_not_move_where_the_stamps_measure_a_skip_from() -> None:
    """A forged seq + 1 stamped at 1 ns (refused as a stamp_jump, its seq used), then seq + 10**9 stamped
    at the clock: measured from the refused stamp the skip was 55 years long, plausible, and the real
    driver's frames were dropped as out of order from then on."""
    now = 1_700_000_000 * 10**9
    ingest = Ingest(BINDINGS.of("lidar/top"), time_jump_ns=1000 * MS)
    for k in range(10):
        assert ingest.process(_ingest_sample("lidar/top", k, now + k * 100 * MS), now + k * 100 * MS)
    t = now + 1000 * MS
    assert ingest.process(_ingest_sample("lidar/top", 10, 1), t) is None  # stamp_jump, seq 10 used
    assert ingest.process(_ingest_sample("lidar/top", 10**9, t), t + MS) is None  # a jump: dropped
    assert ingest.process(_ingest_sample("lidar/top", 11, t + 100 * MS), t + 100 * MS)  # the driver goes on
    counters = ingest.counters()
    assert (counters["seq_jumps"], counters["out_of_order"], counters["seq_lost"]) == (1, 0, 0)


def test_a_forged_seq_gains_nothing_from_a_gap_just_taken() -> None:
    """Measured from before a gap the real driver's messages were accepted across, a forged seq right
    after it would pass for a continuation (it took the stream over: half a second of real frames lost)."""
    tracker = SeqTracker(500 * MS, rate_hz=20)
    tracker.resume(SeqMark(100, 0))
    assert _on_time(tracker, 160, 3000 * MS)  # the real driver, 3 s later: a gap
    assert not _on_time(tracker, 350, 3001 * MS)  # forged: plausible only from before the gap
    assert all(_on_time(tracker, seq, (3000 + 50 * (seq - 160)) * MS) for seq in range(161, 171))
    assert tracker.counters()["seq_jumps"] == 1 and tracker.counters()["out_of_order"] == 0


def test_a_long_outage_is_a_plausible_gap_and_counted_as_lost() -> None:
    tracker = SeqTracker(500 * MS, rate_hz=20)
    t = _real_then(tracker, 10)
    # 3 s without messages at 20 Hz: 60 lost, at most 4 x 20 x 3 + 16 would have been plausible.
    assert _on_time(tracker, 9 + 61, (t + 3050) * MS)
    assert tracker.counters()["seq_lost"] == 60 and tracker.counters()["seq_jumps"] == 0


def _ingest_sample(stream: str, seq: int, stamp_ns: int) -> Sample:
    arrays = {"points": POINTS} if stream == "lidar/top" else {"detections": np.ones((3, 5), np.float32)}
    return _sample(stream, seq, stamp_ns, **arrays)


def test_bad_stamps_are_dropped_by_reason_and_leave_no_seq_gap() -> None:
    now = 1_700_000_000 * 10**9
    ingest = Ingest(BINDINGS.of("lidar/top"))
    assert ingest.process(_ingest_sample("lidar/top", 0, now - 30 * MS), now)
    assert ingest.process(_ingest_sample("lidar/top", 1, -5), now) is None
    years = 3 * 365 * 24 * 3600 * 10**9
    assert ingest.process(_ingest_sample("lidar/top", 2, now + years), now) is None
    assert ingest.process(_ingest_sample("lidar/top", 3, now + 501 * MS), now) is None  # 500 ms default
    assert ingest.process(_ingest_sample("lidar/top", 4, now + 499 * MS), now) is not None
    assert ingest.rejected == {"negative_stamp": 1, "future_stamp": 2}
    assert "ahead of the clock" in ingest.last_error and "max_stamp_ahead_ms" in ingest.last_error
    # The refused messages are not lost upstream: no gap for seqs 1..3.
    assert ingest.counters()["seq_lost"] == 0 and ingest.seq.last_seq == 4


def test_a_message_its_socket_dropped_uses_up_its_seq_and_nothing_else_is_counted() -> None:
    """Counted there by its reason (malformed_*, stale), it is no loss upstream; a header that does not
    continue the sequence plainly, or is not this stream's, changes nothing."""
    now = 1_700_000_000 * 10**9
    ingest = Ingest(BINDINGS.of("lidar/top"))
    assert ingest.process(_ingest_sample("lidar/top", 0, now - 30 * MS), now)
    header = _ingest_sample("lidar/top", 1, now - 20 * MS).header_fields()
    ingest.refused_at_socket(header, now)
    for ignored in (
        header | {"seq": 0},  # behind: no duplicate counted
        header | {"seq": 2**40},  # an implausible jump: no seq_jumps counted
        header | {"seq": True},
        header | {"stamp_ns": "x"},
        header | {"stream": "radar/front", "seq": 2},
    ):
        ingest.refused_at_socket(ignored, now)
    assert ingest.process(_ingest_sample("lidar/top", 2, now - 10 * MS), now) is not None
    assert ingest.seq.counters() == dict.fromkeys(ingest.seq.counters(), 0)
    ingest.refused_at_socket(header | {"seq": 5}, now)  # it came after a real gap: 3 and 4 are lost
    assert ingest.process(_ingest_sample("lidar/top", 6, now), now) is not None
    assert (ingest.counters()["seq_gaps"], ingest.counters()["seq_lost"]) == (1, 2)


def test_the_stamp_tolerance_is_the_config_key_and_a_replay_has_no_wall_clock() -> None:
    config = CONFIG.stream("lidar/top").model_copy(update={"max_stamp_ahead_ms": 2000.0})
    now = 1_700_000_000 * 10**9
    ingest = Ingest(replace(BINDINGS.of("lidar/top"), stream=config))
    assert ingest.process(_ingest_sample("lidar/top", 0, now + 1500 * MS), now) is not None
    replay = Ingest(BINDINGS.of("lidar/top"), live=False)
    assert replay.process(_ingest_sample("lidar/top", 0, now + 10**12), arrival_ns=0) is not None
    assert replay.process(_ingest_sample("lidar/top", 1, -1), arrival_ns=0) is None
    assert replay.rejected == {"negative_stamp": 1}


def test_a_replay_measures_seq_plausibility_and_silence_on_the_stamps() -> None:
    """At any replay speed the arrivals are close; the log's clock is its stamps."""
    replay = Ingest(BINDINGS.of("radar/front"), live=False)
    stamps = [10**18 + k * 50 * MS for k in range(200)]
    assert replay.process(_ingest_sample("radar/front", 0, stamps[0]), arrival_ns=0)
    # 5 s of the log without radar (100 lost), sent 1 ms later: a plausible gap in event time.
    assert replay.process(_ingest_sample("radar/front", 101, stamps[101]), arrival_ns=MS)
    # The driver restarted in the log (seq 0 after 1 s of silence in event time).
    assert replay.process(_ingest_sample("radar/front", 0, stamps[121]), arrival_ns=2 * MS)
    assert not replay.process(_ingest_sample("radar/front", 2**40, stamps[122]), arrival_ns=3 * MS)
    counters = replay.counters()
    assert (counters["seq_lost"], counters["restarts"], counters["seq_jumps"]) == (100, 1, 1)


def _checked(seq: int, stamp_ns: int, points: np.ndarray = POINTS, meta: dict | None = None) -> Checked:
    return check(encode(Sample("lidar/top", "lidar", seq, stamp_ns, {"points": points}, "", meta or {})))


def test_admit_runs_the_header_checks_and_seq_tracking_on_an_undecoded_message() -> None:
    ingest = Ingest(BINDINGS.of("lidar/top"))
    now = 10**18
    assert ingest.admit(_checked(0, now), now)
    assert not ingest.admit(_checked(1, now, POINTS[:, :3].copy()), now)  # schema: uses up seq 1
    assert not ingest.admit(_checked(2, now + 10**12), now)  # stamp: uses up seq 2 too
    assert ingest.admit(_checked(3, now), now)
    assert not ingest.admit(_checked(3, now), now)  # the duplicate newest of a drain is refused too
    assert not ingest.admit(_checked(2**40, now), now)  # and a forged seq
    assert ingest.admit(_checked(4, now), now)
    assert ingest.rejected == {"bad_shape": 1, "future_stamp": 1} and ingest.produced == 0
    counters = ingest.counters()
    assert (counters["duplicates"], counters["seq_jumps"], counters["seq_lost"]) == (1, 1, 0)
    assert ingest.seq.last_seq == 4


def test_a_duplicate_newest_is_refused_by_admit_so_the_node_keeps_the_one_before() -> None:
    ingest = Ingest(BINDINGS.of("lidar/top"))
    drained = [_checked(seq, 10**18) for seq in (0, 1, 2, 2)]
    assert [ingest.admit(message, 10**18) for message in drained] == [True, True, True, False]
    assert ingest.counters()["duplicates"] == 1


YEARS = 3 * 365 * 24 * 3600 * 10**9


def test_one_stamp_far_behind_the_stream_is_dropped_and_cannot_reset_the_synchronizer() -> None:
    now = 1_700_000_000 * 10**9
    ingest = Ingest(BINDINGS.of("lidar/top"))
    assert ingest.process(_ingest_sample("lidar/top", 0, now - 30 * MS), now)
    assert ingest.process(_ingest_sample("lidar/top", 1, now - YEARS), now + 50 * MS) is None
    assert ingest.process(_ingest_sample("lidar/top", 2, now + 70 * MS), now + 100 * MS)
    assert ingest.rejected == {"stamp_jump": 1} and "sync.time_jump_ms" in ingest.last_error
    assert ingest.counters()["seq_lost"] == 0  # the refused message is not lost upstream


def test_a_jump_that_persists_is_the_streams_new_time() -> None:
    """A clock that was set back 5 s: JUMP_CONFIRM messages in a row agree, the third is taken."""
    now = 1_700_000_000 * 10**9
    ingest = Ingest(BINDINGS.of("lidar/top"), time_jump_ns=1000 * MS)
    assert ingest.process(_ingest_sample("lidar/top", 0, now), now)
    back = [
        ingest.process(_ingest_sample("lidar/top", k, now - 5000 * MS + k * 50 * MS), now + k * 50 * MS)
        for k in (1, 2, 3, 4)
    ]
    assert [out is not None for out in back] == [False, False, True, True]
    assert ingest.rejected == {"stamp_jump": 2}


def test_frames_delivered_late_are_not_a_jump() -> None:
    """A 3 s network stall, then its backlog at once: the latency grows, the stamps go on."""
    now = 1_700_000_000 * 10**9
    ingest = Ingest(BINDINGS.of("lidar/top"), time_jump_ns=1000 * MS)
    assert ingest.process(_ingest_sample("lidar/top", 0, now), now + 10 * MS)
    late = [
        ingest.process(_ingest_sample("lidar/top", k, now + k * 50 * MS), now + 3000 * MS)
        for k in range(1, 60)
    ]
    assert all(out is not None for out in late)
    assert ingest.process(_ingest_sample("lidar/top", 60, now + 3050 * MS), now + 3060 * MS)
    assert not ingest.rejected


def test_a_replay_judges_stamps_and_seq_on_the_recorded_time() -> None:
    """A damaged log: a message with seq 2**39 and the largest stamp, then one with a good seq and a
    stamp 3 years ahead. The replayer's log_time_ns is the stream's clock, so neither the seq gap
    nor the stamps are plausible: both dropped, by reason, and nothing counted lost."""
    replay = Ingest(BINDINGS.of("radar/front"), live=False)
    t0 = 1_700_000_000 * 10**9

    def message(seq: int, stamp_ns: int, k: int) -> Sample:
        recorded = {"log_time_ns": t0 + k * 50 * MS + 5 * MS}
        return _sample("radar/front", seq, stamp_ns, recorded, detections=np.ones((3, 5), np.float32))

    assert all(replay.process(message(k, t0 + k * 50 * MS, k), 0) for k in range(10))
    assert replay.process(message(2**39, 2**63 - 1, 10), 0) is None
    assert replay.process(message(10, t0 + YEARS, 10), 0) is None
    assert all(replay.process(message(k, t0 + k * 50 * MS, k), 0) for k in range(11, 20))
    counters = replay.counters()
    assert replay.rejected == {"stamp_jump": 1}
    assert (counters["seq_jumps"], counters["seq_lost"], counters["out_of_order"]) == (1, 0, 0)


def test_seq_gaps_count_what_never_came_and_take_a_lower_seq_for_a_restart() -> None:
    """A node's output numbering (0, 1, 2, ...) as the next node sees it: the synchronizer's of ingest's
    samples, the inference node's of the sets."""
    gaps = SeqGaps()
    assert [gaps.missing_before(seq) for seq in (5, 6, 9, 10, 0, 1, 3)] == [0, 0, 2, 0, 0, 0, 1]


def test_a_seq_passed_over_is_no_gap_and_never_moves_the_numbering_back() -> None:
    """A set the socket refused (stale, malformed) after newer ones were taken: recv_newest falls back to
    older ones, whose seqs must not read as a restart that makes the taken ones count as lost again."""
    gaps = SeqGaps()
    assert [gaps.missing_before(seq) for seq in (10, 11, 12, 13)] == [0, 0, 0, 0]
    for stale in (13, 12, 11, -(2**63), 2**64, True, "99", None):  # fallbacks; headers out of range or type
        gaps.pass_over(stale)
    gaps.pass_over(14)  # refused as well, the newest: its place is taken
    assert gaps.missing_before(15) == 0 and gaps.missing_before(17) == 1


def test_protocol_names_every_reason_ingest_drops_a_message_for() -> None:
    """An integrator reads the reasons off the metrics and `status`: each one is in PROTOCOL.md 5."""
    protocol = (ROOT / "docs" / "PROTOCOL.md").read_text()
    payloads = protocol[protocol.index("## 5. Sensor payloads") : protocol.index("## 6.")]
    assert [r for r in SCHEMA_REASONS if f"`schema_{r}`" not in payloads] == []
