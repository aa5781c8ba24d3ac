"""Sockets within one process: drain-newest, malformed drops, maxmsgsize, close, endpoint errors."""

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import msgpack
import numpy as np
import pytest
import zmq

from fusion_pipeline.transport import Checked, Endpoint, EndpointError, Limits, Publisher, Sample, Subscriber
from fusion_pipeline.transport.sockets import CONTINUOUS_SENSOR_HWM, received_frame


def test_recv_newest_drains_and_counts_skipped(ipc_dir: Path) -> None:
    url = f"ipc://{ipc_dir}/sets.sock"
    with Publisher(url, stream="set", modality="set", hwm=100) as pub, Subscriber(url, hwm=100) as sub:
        time.sleep(0.2)
        for i in range(10):
            pub.publish(i, value=np.array([i], np.int32))
        time.sleep(0.2)
        newest = sub.recv_newest(timeout_ms=2000)
        assert newest is not None and newest.seq == 9
        assert sub.skipped == 9 and sub.received == 1
        assert sub.recv_newest(timeout_ms=50) is None


def test_malformed_messages_are_counted_and_dropped(ipc_dir: Path) -> None:
    url = f"ipc://{ipc_dir}/raw.sock"
    raw = zmq.Context.instance().socket(zmq.PUB)
    raw.linger = 0
    raw.bind(url)
    try:
        with Subscriber(url, hwm=100) as sub:
            refused: list[dict] = []  # the headers that could be read, handed to the caller
            sub.on_refused = refused.append
            time.sleep(0.2)
            raw.send_multipart([b"s", b"\xc1garbage"])
            raw.send_multipart([b"s", msgpack.packb({"v": 9})])
            good = {
                "v": 1,
                "stream": "s",
                "modality": "radar",
                "seq": 4,
                "stamp_ns": 5,
                "frame_id": "",
                "meta": {},
                "arrays": [{"name": "detections", "dtype": "<f4", "shape": [1, 5]}],
            }
            raw.send_multipart([b"s", msgpack.packb(good), b"\0" * 19])
            raw.send_multipart([b"s", msgpack.packb(good), b"\0" * 20])
            sample = sub.recv(timeout_ms=2000)
            assert sample is not None and sample.seq == 4
            assert sub.malformed == {"bad_encoding": 1, "unknown_version": 1, "size_mismatch": 1}
            assert "needs 20 bytes" in sub.last_error
            assert refused == [good]  # an unknown version is not read further
    finally:
        raw.close()


def _radar_header(seq: int, **overrides: object) -> bytes:
    header = {"v": 1, "stream": "s", "modality": "radar", "seq": seq, "stamp_ns": 5, "frame_id": ""}
    header |= {"meta": {}, "arrays": [{"name": "detections", "dtype": "<f4", "shape": [1, 5]}]}
    return msgpack.packb(header | overrides)


@pytest.fixture
def raw_pub(ipc_dir: Path) -> Iterator[tuple[zmq.Socket, str]]:
    """A bare PUB socket: sends any frames, however malformed."""
    url = f"ipc://{ipc_dir}/raw.sock"
    raw = zmq.Context.instance().socket(zmq.PUB)
    raw.linger = 0
    raw.bind(url)
    yield raw, url
    raw.close()


def _burst(raw: zmq.Socket, messages: list[list[bytes]]) -> None:
    for frames in messages:
        raw.send_multipart(frames)
    time.sleep(0.3)  # all of them queued at the subscriber before it looks


def test_a_drained_burst_counts_every_message_by_reason_and_delivers_the_newest_valid(
    raw_pub: tuple[zmq.Socket, str],
) -> None:
    raw, url = raw_pub
    with Subscriber(url, hwm=100) as sub:
        time.sleep(0.2)
        valid = [[b"s", _radar_header(seq), bytes(20)] for seq in (1, 2, 3)]
        bad_msgpack = [b"s", b"\xc1garbage"]
        wrong_version = [b"s", _radar_header(4, v=2), bytes(20)]
        bad_shape = [b"s", _radar_header(5, arrays=[{"name": "d", "dtype": "<f4", "shape": [-1, 5]}]), b""]
        short = [b"s", _radar_header(6), bytes(19)]
        # The newest message is malformed: the newest valid one (seq 3) is delivered, not lost.
        _burst(raw, [valid[0], bad_msgpack, valid[1], wrong_version, bad_shape, valid[2], short, bad_msgpack])
        sample = sub.recv_newest(timeout_ms=2000)
        assert sample is not None and sample.seq == 3 and sample.arrays["detections"].shape == (1, 5)
        assert sub.malformed == {"bad_encoding": 2, "unknown_version": 1, "bad_header": 1, "size_mismatch": 1}
        assert (sub.received, sub.skipped, sub.refused) == (1, 2, 0)
        assert sub.recv_newest(timeout_ms=50) is None


def test_recv_newest_falls_back_past_messages_the_caller_refuses(raw_pub: tuple[zmq.Socket, str]) -> None:
    raw, url = raw_pub
    with Subscriber(url, hwm=100) as sub:
        time.sleep(0.2)
        _burst(raw, [[b"s", _radar_header(seq), bytes(20)] for seq in range(5)])
        seen: list[int] = []

        def admit(checked: Checked) -> bool:
            seen.append(checked.sample.seq)
            return checked.sample.seq < 3  # the caller's own header checks refuse 3 and 4

        sample = sub.recv_newest(timeout_ms=2000, admit=admit)
        assert sample is not None and sample.seq == 2 and seen == [0, 1, 2, 3, 4]
        assert (sub.received, sub.skipped, sub.refused) == (1, 2, 2)


def test_a_newest_message_that_cannot_be_made_whole_falls_back_to_the_one_before(
    raw_pub: tuple[zmq.Socket, str],
) -> None:
    """Its header passes, but its shared-memory slot does not exist: the valid one before it is kept."""
    raw, url = raw_pub
    with Subscriber(url, hwm=100) as sub:
        time.sleep(0.2)
        missing = {"segment": "fp-nonexistent", "slot": 0, "gen": 1}
        spec = {"name": "detections", "dtype": "<f4", "shape": [1, 5], "shm": missing}
        dangling = [b"s", _radar_header(3, arrays=[spec]), b""]
        _burst(raw, [*([b"s", _radar_header(seq), bytes(20)] for seq in range(3)), dangling])
        sample = sub.recv_newest(timeout_ms=2000, admit=lambda checked: True)
        assert sample is not None and sample.seq == 2
        assert (sub.received, sub.skipped, sum(sub.malformed.values())) == (1, 2, 1)


def _receive_one(sub: Subscriber, poller_loop: bool) -> Sample | None:
    """What `recv` does, or what a loop that polls the socket itself does (the composed node, the
    viewer)."""
    if not poller_loop:
        return sub.recv(timeout_ms=200)
    sub.check_connections()
    poller = zmq.Poller()
    poller.register(sub.socket, zmq.POLLIN)
    return sub.recv(timeout_ms=0) if poller.poll(200) else None


@pytest.mark.parametrize("poller_loop", [False, True], ids=["recv", "own poller"])
def test_a_frame_over_the_size_limit_does_not_silence_the_stream(
    raw_pub: tuple[zmq.Socket, str], poller_loop: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """libzmq drops the connection of a peer that sent a frame over MAXMSGSIZE and, connecting, never
    makes it again: the subscriber notices (its monitor) and connects again, counted and said."""
    caplog.set_level("WARNING")
    raw, url = raw_pub
    limits = Limits(max_total_bytes=64 * 1024)
    with Subscriber(url, limits=limits, hwm=100) as sub:
        time.sleep(0.2)
        raw.send_multipart([b"s", _radar_header(0), bytes(20)])
        assert sub.recv(timeout_ms=2000) is not None
        raw.send_multipart([b"s", _radar_header(1), bytes(limits.max_message_bytes + 1)])
        received = []
        deadline = time.monotonic() + 10
        while not received and time.monotonic() < deadline:
            raw.send_multipart([b"s", _radar_header(2), bytes(20)])
            if (sample := _receive_one(sub, poller_loop)) is not None:
                received.append(sample.seq)
        assert received == [2] and sub.reconnects == 1
        assert sub.counters()["reconnects"] == 1 and "did not retry; connected again" in sub.last_error
        assert [r.getMessage() for r in caplog.records if "did not retry" in r.getMessage()] == [
            sub.last_error
        ]


def _wait_quietly(sub: Subscriber, seconds: float) -> None:
    """Receive nothing for `seconds`, in short waits: several looks at the connections."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert sub.recv(timeout_ms=100) is None


def test_a_peer_that_restarts_is_left_to_libzmq(ipc_dir: Path) -> None:
    """A publisher that closes and binds again is reconnected by libzmq itself: not counted."""
    url = f"ipc://{ipc_dir}/again.sock"
    with Subscriber(url, hwm=100) as sub:
        for seq in range(2):
            with Publisher(url, "s", "radar") as pub:
                deadline = time.monotonic() + 5
                while (sample := sub.recv(timeout_ms=100)) is None and time.monotonic() < deadline:
                    pub.publish(5 + seq, {"detections": np.zeros((1, 5), np.float32)})
                assert sample is not None
        _wait_quietly(sub, 2.6)  # more than two looks after the publisher went for good
        assert sub.reconnects == 0


def test_a_busy_endpoint_does_not_hide_another_ones_dropped_connection(ipc_dir: Path) -> None:
    """The queue never empties (one endpoint sends faster than the loop takes): the look at the
    connections still comes, with the messages, and the other endpoint's stream comes back."""
    context = zmq.Context.instance()
    busy, quiet = context.socket(zmq.PUB), context.socket(zmq.PUB)
    urls = [f"ipc://{ipc_dir}/busy.sock", f"ipc://{ipc_dir}/quiet.sock"]
    limits = Limits(max_total_bytes=64 * 1024)
    try:
        for raw, url in zip((busy, quiet), urls, strict=True):
            raw.linger = 0
            raw.bind(url)
        with Subscriber(urls, limits=limits, hwm=100) as sub:
            time.sleep(0.2)
            quiet.send_multipart([b"s", _radar_header(1_000_000), bytes(limits.max_message_bytes + 1)])
            for seq in range(50):  # a backlog, which the loop below only grows
                busy.send_multipart([b"s", _radar_header(seq), bytes(20)])
            time.sleep(0.2)
            deadline, seq, quiet_seen = time.monotonic() + 10, 50, False
            while not quiet_seen and time.monotonic() < deadline:
                for _ in range(5):  # more than the loop takes: the queue never empties
                    busy.send_multipart([b"s", _radar_header(seq), bytes(20)])
                    seq += 1
                quiet.send_multipart([b"s", _radar_header(1_000_001), bytes(20)])
                sample = sub.recv(timeout_ms=200)
                quiet_seen = sample is not None and sample.seq == 1_000_001
                time.sleep(0.001)  # the work on each message: slower than the busy endpoint sends
            assert quiet_seen and sub.reconnects == 1
    finally:
        busy.close()
        quiet.close()


def test_a_quiet_wait_polls_once(ipc_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A receive that times out waits in one poll (after the first look at the connections), not in a
    spin of zero-length polls up to the deadline."""
    with Subscriber(f"ipc://{ipc_dir}/quiet.sock") as sub:
        assert sub.recv(timeout_ms=5) is None  # the first look at the connections is behind us
        polls: list[int] = []
        real_poll = sub.socket.poll

        def counted(timeout: int) -> int:
            polls.append(timeout)
            return real_poll(timeout)

        monkeypatch.setattr(sub.socket, "poll", counted)
        for _ in range(3):
            assert sub.recv(timeout_ms=20) is None
        assert len(polls) == 3


def test_receiving_socket_has_maxmsgsize(ipc_dir: Path) -> None:
    limits = Limits(max_total_bytes=1024 * 1024)
    with Subscriber(f"ipc://{ipc_dir}/m.sock", limits=limits) as sub:
        assert sub.socket.getsockopt(zmq.MAXMSGSIZE) == limits.max_message_bytes


def test_close_is_quick_and_removes_ipc_file(ipc_dir: Path) -> None:
    url = f"ipc://{ipc_dir}/sub/dir/cam.sock"
    pub = Publisher(url, stream="camera/front", modality="camera")
    assert (ipc_dir / "sub/dir/cam.sock").exists()
    assert (ipc_dir / "sub/dir").stat().st_mode & 0o777 == 0o700
    sub = Subscriber(url)
    for i in range(20):  # queued for a subscriber that never reads
        pub.publish(i, image=np.zeros((256, 256, 3), np.uint8))
    start = time.monotonic()
    pub.close()
    sub.close()
    assert time.monotonic() - start < 1.0
    assert not (ipc_dir / "sub/dir/cam.sock").exists()


def test_exact_topics_are_whole_stream_names(ipc_dir: Path) -> None:
    """ZeroMQ matches prefixes: radar/front's ingest took radar/front_left's messages on a shared driver
    socket and counted every one as malformed (schema_wrong_stream)."""
    url = f"ipc://{ipc_dir}/radars.sock"
    with (
        Publisher(url, stream="radar/front", modality="radar") as driver,
        Subscriber(url, topics=["radar/front"], exact=True) as exact,
        Subscriber(url, ["radar/front"]) as both,
    ):
        time.sleep(0.3)
        for seq in range(3):
            for stream in ("radar/front", "radar/front_left"):
                driver.send(Sample(stream, "radar", seq, seq, {"detections": np.zeros((1, 5), np.float32)}))
        taken = [exact.recv(1000) for _ in range(3)]
        assert [s.stream for s in taken if s is not None] == ["radar/front"] * 3
        assert exact.recv(200) is None
        assert (exact.other_streams, dict(exact.malformed)) == (3, {})
        assert sorted(s.stream for s in (both.recv(1000) for _ in range(6)) if s) == (
            ["radar/front"] * 3 + ["radar/front_left"] * 3
        )


def test_an_ipc_path_another_process_serves_is_not_taken_from_it(ipc_dir: Path) -> None:
    """libzmq binds over a socket file: a replay --publish-only onto a running pipeline took its driver's
    path, and removed it at its close, so the pipeline never heard its sensors again."""
    url, path = f"ipc://{ipc_dir}/cam.sock", ipc_dir / "cam.sock"
    with Publisher(url, stream="camera/front", modality="camera") as serving:
        with pytest.raises(EndpointError, match="another process is bound there and serving"):
            Publisher(url, stream="camera/front", modality="camera")
        assert path.is_socket()
        with Subscriber(url) as sub:  # the first one still serves its subscribers
            time.sleep(0.2)
            serving.publish(1, image=np.zeros((2, 2, 3), np.uint8))
            assert sub.recv(2000) is not None
    # A file left by a process that died is bound over.
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
        dead.bind(str(path))  # never listens: as a socket file whose process is gone
        with Publisher(url, stream="camera/front", modality="camera"):
            assert path.is_socket()


def test_close_leaves_a_socket_file_another_process_bound_since(ipc_dir: Path) -> None:
    url, path = f"ipc://{ipc_dir}/cam.sock", ipc_dir / "cam.sock"
    pub = Publisher(url, stream="camera/front", modality="camera")
    path.unlink()  # another program (a driver of the user's) took the path: its file, not ours
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as theirs:
        theirs.bind(str(path))
        pub.close()
        assert path.is_socket()


@pytest.mark.parametrize(
    "url", ["http://x:1", "ipc://relative.sock", "tcp://host", "tcp://host:99999", "tcp://host:\u00b2"]
)
def test_bad_endpoint_is_refused(url: str) -> None:
    with pytest.raises(EndpointError, match="endpoint"):
        Endpoint(url)


def test_bind_failure_names_the_endpoint() -> None:
    with pytest.raises(EndpointError, match=r"endpoint .ipc:///proc/forbidden/x.sock.: .* cannot be created"):
        Publisher("ipc:///proc/forbidden/x.sock", stream="s", modality="m")


def test_a_received_array_is_forwarded_as_its_frame_and_arrives_intact(ipc_dir: Path) -> None:
    a, b = f"ipc://{ipc_dir}/a.sock", f"ipc://{ipc_dir}/b.sock"
    with (
        Publisher(a, stream="camera/front", modality="camera") as first,
        Subscriber(a) as middle,
        Publisher(b, stream="camera/front", modality="camera") as second,
        Subscriber(b) as last,
    ):
        time.sleep(0.2)  # the subscriptions reach the publishers
        image = np.random.default_rng(0).integers(0, 255, (480, 640, 3), np.uint8)
        first.publish(1, image=image, small=np.arange(3, dtype=np.float32))
        got = middle.recv(timeout_ms=2000)
        assert got is not None
        received = got.arrays["image"]
        assert type(received_frame(received)) is zmq.Frame  # a whole frame: passed on as it is
        assert type(received_frame(received[1:])) is np.ndarray  # part of one: sent as its own bytes
        second.send(got, zero_copy=False)
        del got, received  # libzmq holds its own reference to what it still has to send
        forwarded = last.recv(timeout_ms=2000)
        assert forwarded is not None
        np.testing.assert_array_equal(forwarded.arrays["image"], image)
        np.testing.assert_array_equal(forwarded.arrays["small"], np.arange(3, dtype=np.float32))


def test_a_driver_of_a_continuous_stream_queues_a_second_of_a_fast_one_by_default(ipc_dir: Path) -> None:
    """A 1 kHz IMU driver written as README shows (no hwm) queued 8 messages, as a camera's: a scheduling
    hiccup of its reader lost samples, each a hole in every window over it."""
    made = {
        (modality, lossless): Publisher(
            f"ipc://{ipc_dir}/{modality}{lossless}.sock", "s", modality, lossless=lossless
        )
        for modality in ("generic", "audio", "camera")
        for lossless in (False, True)
    }
    try:
        hwm = {key: pub.socket.sndhwm for key, pub in made.items()}
    finally:
        for pub in made.values():
            pub.close()
    assert hwm == {
        ("generic", False): CONTINUOUS_SENSOR_HWM,
        ("audio", False): CONTINUOUS_SENSOR_HWM,
        ("camera", False): 8,  # perishable: the newest frame matters
        ("generic", True): 256,
        ("audio", True): 256,
        ("camera", True): 256,  # a replay's lossless queue
    }
    with Publisher(f"ipc://{ipc_dir}/given.sock", "imu", "generic", hwm=5000) as given:
        assert given.socket.sndhwm == 5000
