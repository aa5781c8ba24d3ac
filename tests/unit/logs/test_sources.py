"""log_sources: split parts grouped by recording in part order, whatever order they come in; a gap said."""

import logging
from pathlib import Path

import pytest

from fusion_pipeline.logs import LogWriter, SplitPolicy, log_sources
from fusion_pipeline.transport import Sample

D = Path("/logs")


def _paths(*names: str) -> list[Path]:
    return [D / name for name in names]


@pytest.mark.parametrize(
    "given",
    [
        ["run_000.mcap", "run_001.mcap", "other.mcap", "run_002.mcap"],
        ["run_002.mcap", "other.mcap", "run_000.mcap", "run_001.mcap"],  # out of order on a command line
    ],
)
def test_the_parts_of_a_recording_are_one_source_in_part_order(
    given: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        sources = log_sources(_paths(*given)).logs
    # Recordings in the order first given (a results log after its recording stays second).
    assert sources == [
        ("run", _paths("run_000.mcap", "run_001.mcap", "run_002.mcap")),
        ("other", _paths("other.mcap")),
    ]
    assert caplog.records == []


LATER_PARTS = "the parts of run from run_002.mcap on are a log of their own, 'run_002'"


@pytest.mark.parametrize(
    ("given", "expected", "warning"),
    [
        (
            ["run_000.mcap", "run_002.mcap", "run_003.mcap"],  # a directory's parts, one lost
            [("run", ["run_000.mcap"]), ("run_002", ["run_002.mcap", "run_003.mcap"])],
            f"/logs/run_001.mcap not given: {LATER_PARTS}",
        ),
        (
            ["run_003.mcap", "run_002.mcap"],
            [("run_002", ["run_002.mcap", "run_003.mcap"])],
            f"/logs/run_000.mcap to run_001.mcap not given: {LATER_PARTS}",
        ),
    ],
)
def test_a_gap_in_the_parts_is_said_naming_the_parts_missing(
    given: list[str], expected: list[tuple[str, list[str]]], warning: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        sources = log_sources(_paths(*given)).logs
    assert sources == [(name, _paths(*parts)) for name, parts in expected]
    assert [r.getMessage() for r in caplog.records] == [warning]


def test_a_gap_is_said_as_a_gap_where_the_parts_are_read_as_one_timeline(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A replay of a recording with a part missing was told its later parts are "a log of their own"
    (the words of a batch, which runs each source on its own): a replay reads on after the gap."""
    with caplog.at_level(logging.WARNING):
        sources = log_sources(_paths("run_000.mcap", "run_002.mcap"), joined=True).logs
    # One source: an export gave the later part's streams topics of their own (/lidar/top@run_002).
    assert sources == [("run", _paths("run_000.mcap", "run_002.mcap"))]
    assert [r.getMessage() for r in caplog.records] == [
        "/logs/run_001.mcap not given: run is read on from run_002.mcap after a gap"
    ]


def _split_recording(tmp_path: Path, parts: int) -> list[Path]:
    """A real recording split into `parts` files (the writer names the part that follows each one)."""
    writer = LogWriter(tmp_path / "drive.mcap", split=SplitPolicy(max_duration_ns=1_000))
    with writer:
        for seq in range(parts):
            writer.write(Sample("lidar/top", "lidar", seq, seq * 1_000, frame_id="lidar_top"), seq * 1_000)
    assert len(writer.paths) == parts
    return writer.paths


@pytest.mark.parametrize("joined", [False, True])
def test_a_recording_whose_last_parts_are_not_given_is_said(
    tmp_path: Path, joined: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """Names alone cannot tell drive_000 and drive_001 from a whole recording of two parts: the part
    written before a split names its successor, so that a lost last part is said like a lost first."""
    parts = _split_recording(tmp_path, 3)
    with caplog.at_level(logging.WARNING):
        sources = log_sources(parts[:2], joined=joined).logs
    assert sources == [("drive", parts[:2])]
    assert [r.getMessage() for r in caplog.records] == [
        f"{parts[2]} not given: drive_001.mcap goes on in it; the later parts are not read"
    ]
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert log_sources(parts, joined=joined).logs == [("drive", parts)]
    assert caplog.records == []


@pytest.mark.parametrize("joined", [False, True])
def test_the_parts_not_given_are_listed_for_a_report(tmp_path: Path, joined: bool) -> None:
    """A replay's --report-json names them, as the warnings do, for scripts (the warnings went to stderr)."""
    parts = _split_recording(tmp_path, 4)
    assert log_sources(parts, joined).parts_not_given == []
    assert log_sources([parts[0], parts[2]], joined).parts_not_given == [str(parts[1]), str(parts[3])]
    assert log_sources(parts[2:], joined).parts_not_given == [f"{parts[0]} to {parts[1].name}"]


@pytest.mark.parametrize("joined", [False, True])
@pytest.mark.parametrize("cut_short", [False, True])
def test_two_recordings_named_as_parts_of_one_are_told_apart(
    tmp_path: Path, joined: bool, cut_short: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """Fleet logs named truck_000.mcap, truck_001.mcap one after the other: a batch ran them as one log,
    its seq gap counted as lost messages, without a word. Their writers' recording ids differ, also in
    a file cut short (a recorder that lost power), which has no summary: the id opens the file too."""
    paths = [tmp_path / "drive_000.mcap", tmp_path / "drive_001.mcap"]
    for seq, path in enumerate(paths):
        with LogWriter(path) as writer:
            writer.write(Sample("lidar/top", "lidar", seq, seq * 1_000, frame_id="lidar_top"), seq * 1_000)
    if cut_short:
        paths[1].write_bytes(paths[1].read_bytes()[:-200])
    with caplog.at_level(logging.WARNING):
        sources = log_sources(paths, joined).logs
    if joined:  # given together to be read as one: read on, said
        assert sources == [("drive", paths)]
        done = "read on after it, as given"
    else:
        assert sources == [("drive", paths[:1]), ("drive_001", paths[1:])]
        done = "run as a log of its own, 'drive_001'"
    assert [r.getMessage() for r in caplog.records] == [
        "drive_001.mcap is named as the part after drive_000.mcap but is another recording (the ids in "
        f"their metadata differ): {done}"
    ]
