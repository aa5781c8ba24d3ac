"""Recorder: every message written, gaps and malformed ones counted, a write failure counted, a fast
publisher drained; a new log's path never overwrites. kill -9 and the record command:
tests/process/test_record.py."""

import dataclasses
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import zmq
from samples import numbered_radar
from security import refusing_driver

from fusion_pipeline.config import load_config, parse_config
from fusion_pipeline.errors import EndpointError
from fusion_pipeline.logs import (
    REPORT_METADATA,
    LogReader,
    Recorder,
    RecordReport,
    RecordSettings,
    SplitPolicy,
    existing_output,
    unused_path,
)
from fusion_pipeline.transport import Publisher


@contextmanager
def _radar_recording(ipc_dir: Path) -> Iterator[tuple[Recorder, Publisher]]:
    """A recorder of radar/front into ipc_dir/r.mcap, and a publisher on that stream it has joined."""
    config = load_config(None)
    recorder = Recorder(config, ipc_dir, RecordSettings(path=ipc_dir / "r.mcap", streams=("radar/front",)))
    with Publisher(
        config.endpoint(config.stream("radar/front").endpoint, ipc_dir), "radar/front", "radar", lossless=True
    ) as pub:
        assert pub.wait_for_subscribers()
        yield recorder, pub


def _record_until(recorder: Recorder, done: Callable[[], bool]) -> RecordReport:
    deadline = time.monotonic() + 5
    while not done():
        assert time.monotonic() < deadline, "recorder did not receive everything"
        recorder.poll(100)
    return recorder.close()


def test_recorder_writes_everything_and_counts_gaps_and_malformed(ipc_dir: Path) -> None:
    with _radar_recording(ipc_dir) as (recorder, pub):
        for seq in (0, 1, 2, 5, 6, 3):  # 3 and 4 lost upstream, then 3 arrives late
            pub.send(numbered_radar(seq))
        pub.socket.send_multipart([b"radar/front", b"\xc1 not msgpack"])
        report = _record_until(
            recorder, lambda: recorder.report.written + sum(recorder.subscriber.malformed.values()) >= 7
        )
    radar = report.streams["radar/front"]
    assert (radar.written, radar.first_seq, radar.last_seq) == (6, 0, 3)
    assert radar.lost_upstream == 2 and radar.out_of_order == 1
    assert report.malformed == {"bad_encoding": 1} and report.lost == 3
    reader = LogReader(ipc_dir / "r.mcap")
    assert [m.sample.seq for m in reader] == [0, 1, 2, 5, 6, 3]
    meta = reader.metadata[REPORT_METADATA]
    assert meta["radar/front.lost_upstream"] == "2" and meta["malformed_bad_encoding"] == "1"
    assert reader.streams["radar/front"]["rate_hz"] == "20"


def test_the_recorder_reports_how_late_it_logged_each_sensor_stream(ipc_dir: Path) -> None:
    """A replay sees a message arrive at its log time: one the recorder took later than sync.max_wait_ms
    after capture misses its set in the replay, where the live set had it. Nothing said so."""
    with _radar_recording(ipc_dir) as (recorder, pub):
        now = time.time_ns()
        for seq, age_ms in enumerate((5, 250, 5)):  # the second captured 250 ms before it was sent
            pub.send(dataclasses.replace(numbered_radar(seq), stamp_ns=now - age_ms * 1_000_000))
        report = _record_until(recorder, lambda: recorder.report.written >= 3)
    radar = report.streams["radar/front"]
    assert radar.late == 1 and 250 <= radar.lag_ms_max < 5000
    assert "1 of them logged more than sync.max_wait_ms (60 ms) after capture" in report.summary()
    reader = LogReader(ipc_dir / "r.mcap")
    assert len(list(reader)) == 3  # the metadata is read with the messages, the report after them
    meta = reader.metadata[REPORT_METADATA]
    assert meta["radar/front.late"] == "1" and float(meta["radar/front.lag_ms_max"]) >= 250


def test_write_failure_is_counted_not_silent(ipc_dir: Path) -> None:
    config = load_config(None)
    publisher = Publisher(
        config.endpoint(config.stream("radar/front").endpoint, ipc_dir), "radar/front", "radar", lossless=True
    )
    # The second recorder's subscription repeats the first's; an XPUB passes a repeat up only when
    # verbose, and the first's leaving may not have reached it yet.
    publisher.socket.setsockopt(zmq.XPUB_VERBOSE, 1)
    try:
        # chunk_bytes=1: every message closes its own chunk, so the first write hits the (broken) file.
        for chunk_bytes, written in ((1, 0), (1 << 20, 0)):
            path = ipc_dir / f"w{chunk_bytes}.mcap"  # a log is never written over
            settings = RecordSettings(path=path, streams=("radar/front",), chunk_bytes=chunk_bytes)
            recorder = Recorder(config, ipc_dir, settings)
            try:
                # The disk fills up: /dev/full takes over the file's descriptor, so every write fails with
                # ENOSPC. (Closing the descriptor instead would let a later socket reuse its number.)
                full = os.open("/dev/full", os.O_WRONLY)
                os.dup2(full, recorder.writer._part.file._fd)
                os.close(full)
                assert publisher.wait_for_subscribers()
                for seq in range(3):
                    publisher.send(numbered_radar(seq))
                for _ in range(3):
                    assert recorder.poll(2000)
            finally:  # a failed check must not leave a socket open for a later test's garbage collection
                recorder.subscriber.close()
            # With big chunks the messages wait in memory; the failure shows when the file is finished.
            report = recorder.close()
            assert report.not_written == 3 and report.written == written
            assert "write failed" in report.error and report.lost == 3
    finally:
        publisher.close()


def test_recorder_drains_while_publisher_is_fast(ipc_dir: Path) -> None:
    """A real-time (dropping) publisher at full speed: what is lost shows up as seq gaps, never silently."""
    config = load_config(None)
    recorder = Recorder(config, ipc_dir, RecordSettings(path=ipc_dir / "fast.mcap", streams=("radar/front",)))
    done = threading.Event()

    def publish() -> None:
        with Publisher(
            config.endpoint(config.stream("radar/front").endpoint, ipc_dir), "radar/front", "radar"
        ) as pub:
            time.sleep(0.3)  # slow joiner: let the recorder connect
            for seq in range(2000):
                pub.send(numbered_radar(seq))
            time.sleep(0.5)
        done.set()

    thread = threading.Thread(target=publish)
    thread.start()
    while not done.is_set() or recorder.poll(200):
        recorder.poll(50)
    thread.join()
    report = recorder.close()
    radar = report.streams["radar/front"]
    # Every seq from the first received to the last received is either written or counted as lost.
    assert radar.written > 0 and radar.written + radar.lost_upstream == radar.last_seq - radar.first_seq + 1
    assert radar.written == sum(1 for _ in LogReader(ipc_dir / "fast.mcap"))


def test_unused_path_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "run.mcap"
    assert unused_path(path, SplitPolicy()) == path
    path.touch()
    assert unused_path(path, SplitPolicy()) == tmp_path / "run-1.mcap"
    (tmp_path / "run-1.mcap").touch()
    assert unused_path(path, SplitPolicy()) == tmp_path / "run-2.mcap"
    split = SplitPolicy(max_bytes=1 << 20)
    assert unused_path(tmp_path / "big.mcap", split) == tmp_path / "big.mcap"
    (tmp_path / "big_000.mcap").touch()
    assert unused_path(tmp_path / "big.mcap", split) == tmp_path / "big-1.mcap"
    # A first part moved away leaves the later ones, which a new recording would reach (and lose).
    (tmp_path / "big-1_001.mcap").touch()
    (tmp_path / "big-2_001x.mcap").touch()  # not a part of big-2.mcap
    assert existing_output(tmp_path / "big-1.mcap", split) == tmp_path / "big-1_001.mcap"
    assert unused_path(tmp_path / "big.mcap", split) == tmp_path / "big-2.mcap"


def test_a_recorder_that_cannot_subscribe_leaves_no_log(ipc_dir: Path) -> None:
    """The subscriber fails first (a relative ipc path, refused by the transport), so no log is started:
    a half file would hold nothing and refuse the retry as "exists already"."""
    config = load_config(None)
    path = ipc_dir / "r.mcap"
    with pytest.raises(EndpointError, match="absolute path"):
        Recorder(config, Path("relative/run"), RecordSettings(path=path))
    assert not path.exists()
    Recorder(config, ipc_dir, RecordSettings(path=path)).close()  # the retry
    assert path.exists()


def test_a_stream_asked_for_that_sends_nothing_is_said(ipc_dir: Path) -> None:
    """A dead sensor's stream was simply absent from the report and the summary, exit 0."""
    config = load_config(None)
    settings = RecordSettings(path=ipc_dir / "r.mcap", streams=("radar/front", "camera/front"))
    recorder = Recorder(config, ipc_dir, settings)
    with Publisher(
        config.endpoint(config.stream("radar/front").endpoint, ipc_dir), "radar/front", "radar", lossless=True
    ) as pub:
        assert pub.wait_for_subscribers()
        pub.send(numbered_radar(0))
        deadline = time.monotonic() + 5
        while recorder.report.written < 1:
            assert time.monotonic() < deadline, "recorder did not receive the radar message"
            recorder.poll(100)
        report = recorder.close()
    assert report.silent == ["camera/front"]
    assert "camera/front: NOTHING received" in report.summary()
    assert report.as_json()["silent"] == ["camera/front"]
    reader = LogReader(ipc_dir / "r.mcap")
    assert [m.sample.stream for m in reader] == ["radar/front"]
    assert reader.metadata[REPORT_METADATA]["silent"] == "camera/front"


def test_a_recorder_hearing_nothing_says_so_and_says_the_return(
    ipc_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A recorder left running after its pipeline stopped (or started on other endpoints) recorded
    nothing without a word until it was stopped."""
    with _radar_recording(ipc_dir) as (recorder, pub), caplog.at_level("INFO", "fusion_pipeline.logs"):

        def said() -> list[str]:
            return [r.getMessage() for r in caplog.records if r.name == "fusion_pipeline.logs.recorder"]

        def stop() -> bool:  # silent until said, then one message, then silent until said again
            if sum(m.startswith("nothing recorded") for m in said()) == 1 and not recorder.report.written:
                pub.send(numbered_radar(0))
            return sum(m.startswith("nothing recorded") for m in said()) == 2 or time.monotonic() > deadline

        deadline = time.monotonic() + 30
        recorder.run(stop, silence_s=0.3)
        recorder.close()
    silent = [m for m in said() if m.startswith("nothing recorded")]
    assert len(silent) == 2, said()
    since_start = r"nothing recorded in the \d+ s since the start from any stream recorded .*is the pipeline"
    assert re.match(since_start, silent[0])
    since_last = (
        r"nothing recorded for \d+ s from any stream recorded \(radar/front\).*has the pipeline stopped"
    )
    assert re.match(since_last, silent[1])
    assert any(m.startswith("recording again: messages came after ") for m in said()), said()


def test_a_driver_refusing_the_recorders_key_is_named_in_the_report(tmp_path: Path, ipc_dir: Path) -> None:
    """It said only "is the pipeline running?": the reason was a driver that refused the host's key."""
    with refusing_driver(tmp_path) as (endpoint, text):
        settings = RecordSettings(path=ipc_dir / "r.mcap", streams=("radar/front",))
        recorder = Recorder(parse_config(text), ipc_dir, settings)
        deadline = time.monotonic() + 5
        while not recorder.subscriber.handshake_failing and time.monotonic() < deadline:
            recorder.poll(100)
        report = recorder.close()
    refused = {endpoint: "the CURVE server refused this client's key"}
    assert report.handshake_failing == refused and report.as_json()["handshake_failing"] == refused
    assert f"{endpoint}: HANDSHAKE FAILING: the CURVE server refused" in report.summary()
