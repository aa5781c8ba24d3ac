"""The batch manifest: a line per finished log, the last one of a log wins, a line a killed batch left
cut short is ignored and the next line starts on its own, anything else that is not a record (a field of
another type included) is refused with its line number and the field; one batch at a time holds a
directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fusion_pipeline.offline import BatchError, LogRecord, Manifest
from fusion_pipeline.offline.manifest import MANIFEST_NAME, read_records


def record(name: str, status: str = "done", **fields: object) -> LogRecord:
    return LogRecord(name, [f"/logs/{name}.mcap"], status, **fields)  # type: ignore[arg-type]


def test_records_are_appended_and_read_back(tmp_path: Path) -> None:
    written = [
        record("a", "failed", error="log cut short: ..."),
        record("b", results="b.results.mcap", counts={"sets": 3}, timings={"wall_s": 0.5}),
        record("a", results="a.results.mcap", stats={"results": 2}),
    ]
    with Manifest(tmp_path) as manifest:
        for line in written:
            manifest.append(line)
    with Manifest(tmp_path) as manifest:
        assert manifest.records == {"a": written[2], "b": written[1]}  # the last line of a log wins
    assert len((tmp_path / MANIFEST_NAME).read_text().splitlines()) == 3


def test_a_line_cut_short_is_ignored_and_the_next_starts_anew(tmp_path: Path) -> None:
    whole = record("a").to_line()
    (tmp_path / MANIFEST_NAME).write_text(whole + "\n" + record("b").to_line()[:25])
    with Manifest(tmp_path) as manifest:
        assert list(manifest.records) == ["a"]
        manifest.append(record("c"))
    with Manifest(tmp_path) as manifest:
        assert list(manifest.records) == ["a", "c"]
    assert (tmp_path / MANIFEST_NAME).read_text() == whole + "\n" + record("c").to_line() + "\n"


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("{not json", "Expecting property name"),
        ("[1, 2]", "not a JSON object"),
        ('{"log": "a", "status": "done"}', "paths: Field required"),
        (
            '{"log": "a", "paths": [], "status": "running"}',
            "status: Input should be 'done' or 'failed' .got 'running'.",
        ),
    ],
)
def test_a_line_that_is_no_record_is_refused_with_its_number(line: str, problem: str) -> None:
    text = record("a").to_line() + "\n" + line + "\n"
    with pytest.raises(BatchError, match=f"manifest.jsonl, line 2: not a manifest record: {problem}"):
        read_records(text, "out/manifest.jsonl")


def _with(**values: object) -> str:
    """A done record's line with `values` in place of its fields'."""
    fields = json.loads(record("a", identity=[{"size": 1, "mtime_ns": 2}]).to_line())
    return json.dumps(fields | values)


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        (
            _with(stats={"outputs": {"position": {"n": "many"}}}),
            "stats.outputs.position.n: Input should be a valid integer .got 'many'.; "
            "stats.outputs.position.mean: Field required",
        ),
        (
            _with(stats={"outputs": {"position": {"n": "many", "mean": 0, "m2": 0, "min": 0, "max": 0}}}),
            "stats.outputs.position.n: Input should be a valid integer .got 'many'.$",
        ),
        (
            _with(stats={"patterns": {"all present": 1.5}}),
            "stats.patterns.all present: Input should be a valid integer .got 1.5.",
        ),
        (_with(counts={"sets": "3"}), "counts.sets: Input should be a valid integer .got '3'."),
        (
            _with(counts={"drops": {"ingest": {"late": None}}}),
            "counts.drops.ingest.late: Input should be a valid integer .got None.",
        ),
        (_with(timings={"log_s": True}), "timings.log_s: Input should be a valid number .got True."),
        (_with(paths=["/logs/a.mcap", 7]), r"paths\[1\]: Input should be a valid string .got 7."),
        (_with(error=None), "error: Input should be a valid string .got None."),
        (_with(stats=[]), r"stats: Input should be a valid dictionary .got \[\]."),
        (_with(identity=[{"size": 1}]), r"identity\[0\].mtime_ns: Field required"),
        (_with(paths=["/a", "/b"]), "2 paths but an identity for 1"),
    ],
)
def test_a_field_of_the_wrong_type_is_refused_by_name(line: str, problem: str) -> None:
    text = record("b").to_line() + "\n" + line + "\n"
    with pytest.raises(BatchError, match=f"out/manifest.jsonl, line 2: not a manifest record: {problem}"):
        read_records(text, "out/manifest.jsonl")


def test_a_record_of_every_type_survives_its_line() -> None:
    written = record(
        "a",
        results="a.results.mcap",
        counts={"messages": 3, "sent": {"lidar/top": 3}, "sets": 2, "drops": {"ingest": {"late": 1}}},
        timings={"log_s": 1, "speedup": 2.5},  # an integer is a number
        stats={"results": 2, "outputs": {"x": {"n": 2, "mean": 1.0, "m2": 0.0, "min": 1.0, "max": 1.0}}},
        identity=[{"size": 10, "mtime_ns": 20}],
    )
    assert read_records(written.to_line() + "\n", "m") == {"a": written}


def test_keys_a_later_version_adds_are_ignored() -> None:
    line = record("a").to_line()[:-1] + ', "host_gpu": "none"}\n'
    assert read_records(line, "m") == {"a": record("a")}


def test_one_batch_at_a_time_holds_a_directory(tmp_path: Path) -> None:
    with Manifest(tmp_path), pytest.raises(BatchError, match=f"another batch is running in {tmp_path}"):
        Manifest(tmp_path)
    Manifest(tmp_path).close()  # free again once the first is closed


@pytest.mark.parametrize("there", ["", "written", "empty"])
def test_a_failed_batch_removes_only_an_empty_manifest_it_made(tmp_path: Path, there: str) -> None:
    path = tmp_path / MANIFEST_NAME
    if there:
        path.write_text("" if there == "empty" else LogRecord("a", ["a.mcap"], "done").to_line() + "\n")
    with pytest.raises(RuntimeError), Manifest(tmp_path):
        raise RuntimeError("the batch failed before its first line")
    assert path.exists() == bool(there)
    with pytest.raises(RuntimeError), Manifest(tmp_path) as manifest:
        manifest.append(LogRecord("b", ["b.mcap"], "failed"))
        raise RuntimeError("the batch failed after a line")
    with Manifest(tmp_path) as manifest:
        assert "b" in manifest.records
