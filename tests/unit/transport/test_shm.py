"""Shared-memory arrays (PROTOCOL 3.2): round trip, stale slots, busy slots, hostile references, cleanup."""

import fcntl
import os
import stat
import time
from pathlib import Path

import msgpack
import numpy as np
import pytest
import zmq

from fusion_pipeline.transport import (
    ArraySizeError,
    HeaderError,
    Publisher,
    Sample,
    StaleError,
    Subscriber,
    check,
    decode,
    encode,
    recv_frames,
    shm,
)

IMAGE = np.arange(480 * 640 * 3, dtype=np.uint32).astype(np.uint8).reshape(480, 640, 3)  # 900 KB


def _connected(ipc_dir: Path, **publisher: object) -> tuple[Publisher, Subscriber]:
    url = f"ipc://{ipc_dir}/camera.sock"
    pub = Publisher(url, stream="camera/front", modality="camera", **publisher)  # type: ignore[arg-type]
    sub = Subscriber(url, hwm=1000)
    time.sleep(0.3)  # PUB/SUB: let the subscription arrive
    return pub, sub


def test_large_arrays_travel_by_reference_small_ones_inline(ipc_dir: Path) -> None:
    pub, sub = _connected(ipc_dir, shm=True)
    raw = zmq.Context.instance().socket(zmq.SUB)  # sees the frames as they are on the wire
    raw.subscribe(b"")
    raw.connect(f"ipc://{ipc_dir}/camera.sock")
    time.sleep(0.3)
    try:
        small = np.arange(10, dtype=np.float32)
        pub.publish(7, image=IMAGE, probs=small)
        sample = sub.recv(timeout_ms=2000)
        frames = [bytes(f) for f in recv_frames(raw)]
        assert sample is not None
        assert np.array_equal(sample.arrays["image"], IMAGE) and not sample.arrays["image"].flags.writeable
        assert np.array_equal(sample.arrays["probs"], small)
        image_spec, probs_spec = msgpack.unpackb(frames[1])["arrays"]
        assert set(image_spec["shm"]) == {"segment", "slot", "gen"} and frames[2] == b""
        assert "shm" not in probs_spec and frames[3] == small.tobytes()
        segment = pub.segments.path
        assert segment is not None and stat.S_IMODE(segment.stat().st_mode) == 0o600
        assert sub.received_bytes >= IMAGE.nbytes  # bandwidth counts the arrays, not the frames
    finally:
        raw.close(0)
        pub.close()
        sub.close()
    assert not segment.exists(), "closing the publisher removes its segment"


def test_a_reader_behind_the_ring_gets_stale_counts_never_torn_data(ipc_dir: Path) -> None:
    pub, sub = _connected(ipc_dir, shm=True, hwm=1000)  # queues deep enough that no message is dropped
    published = 3 * shm.DEFAULT_SLOTS
    refused: list[int] = []  # the seq of each stale message, from its header (a receiver's seq tracking)
    sub.on_refused = lambda header: refused.append(header["seq"])
    with pub, sub:
        for i in range(published):
            pub.publish(i, image=np.full(IMAGE.shape, i, np.uint8))
        received = []
        while (sample := sub.recv(timeout_ms=1000)) is not None:
            received.append(sample)
    # Only the last ring's worth is still in its slots; everything older is stale, not wrong.
    assert [s.seq for s in received] == list(range(published - shm.DEFAULT_SLOTS, published))
    assert sub.stale == published - shm.DEFAULT_SLOTS and refused == list(range(sub.stale))
    for sample in received:
        assert np.all(sample.arrays["image"] == sample.seq)
    assert sub.counters()["stale"] == sub.stale and not sub.malformed


def test_a_slot_being_read_is_skipped_and_a_full_ring_sends_inline(ipc_dir: Path) -> None:
    writer = shm.SegmentWriter("camera/front", slots=2)
    try:
        first = writer.place(IMAGE)
        assert first is not None and first.slot == 0
        # A reader (its own open file description) holds slot 1 while it copies.
        fd = os.open(writer.path, os.O_RDONLY)
        try:
            assert shm._try_lock(fd, fcntl.F_RDLCK, *writer._segment.slot_range(1))
            assert writer.place(IMAGE).slot == 0  # slot 1 was skipped
            assert shm._try_lock(fd, fcntl.F_RDLCK, *writer._segment.slot_range(0))  # now slot 0 too
            assert writer.place(IMAGE) is None and writer.inline == 1
            frames = encode(Sample("camera/front", "camera", 0, 0, {"image": IMAGE}), writer)
            assert bytes(frames[2]) == IMAGE.tobytes()  # sent in its frame instead
        finally:
            os.close(fd)
        assert writer.place(IMAGE) is not None  # the reader is gone, its locks with it
    finally:
        writer.close()


def test_a_reference_to_a_rewritten_slot_is_stale() -> None:
    writer, reader = shm.SegmentWriter("radar", slots=1), shm.SegmentReader()
    try:
        old = writer.place(IMAGE)
        new = writer.place(IMAGE[::-1].copy())
        assert old is not None and new is not None and old.slot == new.slot
        with pytest.raises(StaleError, match="reused"):
            reader.read(old, IMAGE.nbytes)
        assert np.array_equal(reader.read(new, IMAGE.nbytes), IMAGE[::-1].reshape(-1))
    finally:
        writer.close()
        reader.close()
    with pytest.raises(StaleError, match="gone"):
        shm.SegmentReader().read(new, IMAGE.nbytes)


def test_a_reader_lets_go_of_segments_their_publisher_removed() -> None:
    reader = shm.SegmentReader()
    first, second = shm.SegmentWriter("camera", slots=2), shm.SegmentWriter("camera", slots=2)
    try:
        reader.read(first.place(IMAGE), IMAGE.nbytes)
        first.close()  # a restarted driver: its old ring is unlinked, a new one takes over
        reader.read(second.place(IMAGE), IMAGE.nbytes)
        assert list(reader._segments) == [second.path.name]
    finally:
        second.close()
        reader.close()


def _frames(ref: dict, frame: bytes = b"", shape: list | None = None) -> list[bytes]:
    header = {
        "v": 1, "stream": "camera/front", "modality": "camera", "seq": 0, "stamp_ns": 0, "frame_id": "",
        "meta": {}, "arrays": [{"name": "image", "dtype": "|u1", "shape": shape or [16], "shm": ref}],
    }  # fmt: skip
    return [b"camera/front", msgpack.packb(header), frame]


def test_hostile_references_are_refused_before_any_file_is_read() -> None:
    writer, reader = shm.SegmentWriter("camera", slots=2), shm.SegmentReader()
    try:
        good = writer.place(IMAGE)
        assert good is not None
        ok = {"segment": good.segment, "slot": good.slot, "gen": good.gen}
        for ref, error, match in [
            ({**ok, "segment": "../../etc/passwd"}, HeaderError, "not fp-<pid>-<label>"),
            ({**ok, "segment": "fp-1-x/../../etc"}, HeaderError, "not fp-<pid>-<label>"),
            ({**ok, "slot": 2}, HeaderError, "slot 2 of a 2-slot segment"),
            ({**ok, "slot": -1}, HeaderError, "unsigned"),
            ({**ok, "gen": "1"}, HeaderError, "needs segment"),
            ("fp-1-x", HeaderError, "must be a map"),
            ({**ok, "segment": "fp-999999999-none-00"}, StaleError, "gone"),
        ]:
            with pytest.raises(error, match=match):
                decode(_frames(ref), shm=reader)
        # The header check itself refuses a name: a message a node drains past is checked, never
        # materialized, and such a message was counted as skipped rather than refused.
        with pytest.raises(
            HeaderError, match="'shm' segment name '../../etc/passwd' is not fp-<pid>-<label>"
        ):
            check(_frames({**ok, "segment": "../../etc/passwd"}))
        with pytest.raises(ArraySizeError, match="frame is not empty"):
            decode(_frames(ok, frame=b"x" * 16), shm=reader)
        with pytest.raises(HeaderError, match="non-ipc receiver"):
            decode(_frames(ok))
        with pytest.raises(HeaderError, match="larger than a slot"):
            decode(_frames(ok, shape=[64 * 1024 * 1024]), shm=reader)
        assert decode(_frames(ok, shape=list(IMAGE.shape)), shm=reader).arrays["image"].shape == IMAGE.shape
    finally:
        writer.close()
        reader.close()


def test_a_file_that_is_not_a_segment_is_refused() -> None:
    path = shm.SEGMENT_DIR / f"fp-{os.getpid()}-forged-00"
    path.write_bytes(b"not a segment" * 100)
    try:
        with pytest.raises(HeaderError, match="not a fusion-pipeline segment"):
            decode(_frames({"segment": path.name, "slot": 0, "gen": 1}), shm=shm.SegmentReader())
    finally:
        path.unlink()


def test_segments_no_live_publisher_holds_are_removed() -> None:
    live = shm.SegmentWriter("camera")
    live.place(IMAGE)
    orphan = shm.SEGMENT_DIR / f"fp-{os.getpid()}-killed-00"  # a publisher killed before it cleaned up
    young = shm.SEGMENT_DIR / f"fp-{os.getpid()}-starting-00"  # created a moment ago, not yet locked
    orphan.write_bytes(bytes(128))
    young.write_bytes(bytes(128))
    old = time.time() - 2 * shm.ORPHAN_AGE_S
    for path in (orphan, live.path):
        os.utime(path, (old, old))
    try:
        assert shm.remove_orphans() == [orphan]
        assert not orphan.exists() and young.exists() and live.path.exists()
    finally:
        orphan.unlink(missing_ok=True)
        young.unlink()
        live.close()


def test_the_rings_of_processes_known_to_have_exited_go_whatever_their_age() -> None:
    """A run's sweep at its end: a node killed a moment ago left a ring younger than ORPHAN_AGE_S, which
    stayed in /dev/shm after the run (15 MB per killed camera driver). A ring made after its pid's process
    was seen exited is another process's that has been given the pid since, and stays."""
    live = shm.SegmentWriter("camera")
    live.place(IMAGE)
    killed = shm.SEGMENT_DIR / "fp-999999-camera-00"  # young: made a moment ago by a node since killed
    other = shm.SEGMENT_DIR / "fp-999998-camera-00"  # young, of a process the sweep knows nothing of
    reused = shm.SEGMENT_DIR / "fp-999997-camera-00"  # made after its pid's node exited a minute ago
    for path in (killed, other, reused):
        path.write_bytes(bytes(128))
    now = time.time()
    try:
        assert shm.remove_orphans() == []
        exited = {999999: now + 1, 999997: now - 60, os.getpid(): now + 1}
        assert shm.remove_orphans(exited=exited) == [killed]
        assert other.exists() and reused.exists() and live.path.exists()  # held: the live one
    finally:
        for path in (killed, other, reused):
            path.unlink(missing_ok=True)
        live.close()


def test_a_full_dev_shm_sends_inline_instead_of_crashing(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_room(fd: int, offset: int, length: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", no_room)
    writer = shm.SegmentWriter("camera")
    assert writer.place(IMAGE) is None and writer.place(IMAGE) is None
    assert "No space left" in writer.unavailable and writer.path is None
    assert not list(shm.SEGMENT_DIR.glob(f"fp-{os.getpid()}-camera-*"))


def test_a_segment_others_can_write_is_refused() -> None:
    writer = shm.SegmentWriter("camera", slots=2)
    try:
        ref = writer.place(IMAGE)
        writer.path.chmod(0o622)  # others could shrink it under a reader's mapping
        with pytest.raises(HeaderError, match="private"):
            shm.SegmentReader().read(ref, IMAGE.nbytes)
    finally:
        writer.close()


def test_lossless_and_tcp_publishers_never_use_shared_memory(ipc_dir: Path) -> None:
    with Publisher(f"ipc://{ipc_dir}/replay.sock", "lidar/top", "lidar", lossless=True, shm=True) as lossless:
        assert lossless.segments is None  # a ring overtaking a slow reader would lose messages
    with Publisher("tcp://127.0.0.1:*", "lidar/top", "lidar", shm=True) as remote:
        assert remote.segments is None
    with Subscriber("tcp://127.0.0.1:5", bind=False) as subscriber:
        assert subscriber.segments is None  # a remote peer must not name files on this host
