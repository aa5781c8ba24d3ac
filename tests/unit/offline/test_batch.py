"""The batch's pure parts: which logs a command line names, what a batch does with each given its
manifest and directory (a log changed since it was done is run again), the digest that tells one
config's results from another's, and the config as the workers run it; a batch whose workers are a
stand-in, for what it records and compares. A batch run end to end: tests/process/test_batch.py."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import psutil
import pytest

import fusion_pipeline.offline.batch as batch_module
import fusion_pipeline.offline.worker as worker_module
from fusion_pipeline.cli import main
from fusion_pipeline.config import Config, load_config
from fusion_pipeline.inference import model_path
from fusion_pipeline.logs import LogError, LogWriter
from fusion_pipeline.offline import BatchError, BatchLog, LogRecord, Manifest, find_logs, run_batch
from fusion_pipeline.offline.batch import SUMMARY_NAME, _workers_config, plan_batch, results_digest
from fusion_pipeline.offline.cluster import import_ray
from fusion_pipeline.offline.manifest import PartIdentity
from fusion_pipeline.offline.summary import format_summary
from fusion_pipeline.offline.worker import LogTask, run_log
from fusion_pipeline.transport import Sample

DEMO = load_config(None)


def touch(folder: Path, *names: str) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"")
    return [folder / name for name in names]


def test_a_directory_is_its_logs_with_split_parts_as_one(tmp_path: Path) -> None:
    touch(tmp_path / "fleet", "b.mcap", "a_001.mcap", "a_000.mcap", "c_002.mcap", "notes.txt")
    touch(tmp_path / "fleet", "old.results.mcap", "old.results.mcap.partial")  # a batch's own files
    logs = find_logs([tmp_path / "fleet"])
    fleet = tmp_path / "fleet"
    assert logs == [
        BatchLog("a", (fleet / "a_000.mcap", fleet / "a_001.mcap")),
        BatchLog("b", (fleet / "b.mcap",)),
        BatchLog("c_002", (fleet / "c_002.mcap",)),  # a part without its predecessors is a log of its own
    ]


def test_logs_named_twice_run_once_and_names_stay_apart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    (here,) = touch(tmp_path / "x", "drive.mcap")
    (there,) = touch(tmp_path / "y", "drive.mcap")
    monkeypatch.chdir(tmp_path)
    with caplog.at_level(logging.WARNING):
        logs = find_logs([Path("x"), here, Path("x/drive.mcap"), there])
    # Absolute paths; the same file once; another file of the same name gets a name of its own.
    assert logs == [BatchLog("drive", (here,)), BatchLog("drive-2", (there,))]
    # Said: the other commands refuse a log given twice, and a batch ran it once without a word.
    assert [r.getMessage() for r in caplog.records] == [f"given more than once, run once: {here}"]


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("missing.mcap", "no such log file or directory"),
        ("empty", "no .mcap log"),
        ("fifo.mcap", "not a regular file"),  # it said "no such log file or directory"
    ],
)
def test_an_argument_that_names_no_log_is_refused(tmp_path: Path, name: str, problem: str) -> None:
    (tmp_path / "empty").mkdir()
    os.mkfifo(tmp_path / "fifo.mcap")
    with pytest.raises(BatchError, match=f"{tmp_path / name}: {problem}"):
        find_logs([tmp_path / name])


def test_what_is_no_file_in_a_directory_is_said_not_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A FIFO or a directory named *.mcap was left out without a word ("batch of 15 logs" for 17)."""
    (log,) = touch(tmp_path, "a.mcap")
    os.mkfifo(tmp_path / "fifo.mcap")
    (tmp_path / "dir.mcap").mkdir()
    with caplog.at_level("WARNING"):
        assert find_logs([tmp_path]) == [BatchLog("a", (log,))]
    assert f"{tmp_path}: not run, not files (a directory, a FIFO, ...): dir.mcap, fifo.mcap" in caplog.text


def test_an_out_that_is_a_file_is_refused_as_such(tmp_path: Path) -> None:
    """It said "--out demo.toml: cannot create it: File exists"."""
    (log,) = touch(tmp_path / "logs", "a.mcap")
    (tmp_path / "demo.toml").write_text("kept\n")
    with pytest.raises(BatchError, match="demo.toml: a file, not a directory"):
        run_batch([log], tmp_path / "demo.toml", load_config(None))
    assert (tmp_path / "demo.toml").read_text() == "kept\n"


LOGS = [
    BatchLog(name, (Path(f"/logs/{name}.mcap"),)) for name in ("done", "redo", "failed", "new", "foreign")
]
NOW: list[PartIdentity] = [{"size": 100, "mtime_ns": 7}]  # each log's one file as the batch finds it
IDENTITIES = {log.name: NOW for log in LOGS}


def done(
    name: str, digest: str = "d1", paths: list[str] | None = None, identity: list[PartIdentity] = NOW
) -> LogRecord:
    return LogRecord(
        name,
        paths or [f"/logs/{name}.mcap"],
        "done",
        results=f"{name}.results.mcap",
        digest=digest,
        identity=identity,
    )


def test_a_rerun_skips_the_done_logs_and_runs_the_rest() -> None:
    records = {
        "done": done("done"),
        "redo": done("redo"),  # its file is gone: killed between the manifest line and the rename
        "failed": LogRecord("failed", ["/logs/failed.mcap"], "failed", error="log cut short"),
    }
    present = {"done.results.mcap", "foreign.results.mcap"}
    plan = plan_batch(LOGS, IDENTITIES, records, present, "d1", Path("/out"))
    assert [log.name for log in plan.skipped] == ["done"]
    assert [log.name for log in plan.run] == ["redo", "failed", "new"]
    assert plan.unverified == []
    # A results file the manifest does not account for is never written over: the log fails, said why.
    (refused,) = plan.refused
    assert (refused.log, refused.status, refused.digest) == ("foreign", "failed", "d1")
    assert "/out/foreign.results.mcap is there but the manifest does not say" in refused.error


@pytest.mark.parametrize(
    ("record", "problem"),
    [
        (done("done", digest="d0"), "done was made with another config or model \\(d0\\)"),
        (done("done", paths=["/elsewhere/done.mcap"]), "done is the results of /elsewhere/done.mcap"),
    ],
)
def test_results_of_another_batch_under_a_name_are_refused(record: LogRecord, problem: str) -> None:
    with pytest.raises(BatchError, match=f"/out holds other results under this batch's names: {problem}"):
        plan_batch(LOGS, IDENTITIES, {"done": record}, {"done.results.mcap"}, "d1", Path("/out"))


def test_a_done_log_given_by_another_path_to_its_files_is_said_as_such(tmp_path: Path) -> None:
    """Through a link to the logs' directory: "done is the results of /logs/done.mcap", as if of
    another recording."""
    (log,) = touch(tmp_path / "logs", "done.mcap")
    (tmp_path / "link").symlink_to(tmp_path / "logs")
    record = done("done", paths=[str(log)])
    linked = [BatchLog("done", (tmp_path / "link" / "done.mcap",))]
    with pytest.raises(BatchError, match=f"done was made from the same files by other paths, {log} \\(give"):
        plan_batch(linked, {"done": NOW}, {"done": record}, {"done.results.mcap"}, "d1", Path("/out"))


def test_a_directory_whose_other_done_logs_are_of_another_model_is_refused() -> None:
    """A batch of log c with another model into a directory of log a's results: both were summed into
    one summary, and a --compare against it compared with two models, without a word."""
    other = {"a": done("a", digest="d0")}
    with pytest.raises(BatchError, match="/out holds results of another config or model: a \\(d0\\)"):
        plan_batch(LOGS[3:4], IDENTITIES, other, {"a.results.mcap"}, "d1", Path("/out"))
    # Its results file removed (the summary says `removed`), or failed: nothing of it is pooled.
    assert plan_batch(LOGS[3:4], IDENTITIES, other, set(), "d1", Path("/out")).run == LOGS[3:4]
    same = {"a": done("a", digest="d1")}
    assert plan_batch(LOGS[3:4], IDENTITIES, same, {"a.results.mcap"}, "d1", Path("/out")).run == LOGS[3:4]


@pytest.mark.parametrize(
    ("identity", "then_now"),
    [
        ([{"size": 50, "mtime_ns": 7}], "/logs/done.mcap: 50 bytes at mtime_ns 7 -> 100 bytes at mtime_ns 7"),
        (
            [{"size": 100, "mtime_ns": 3}],
            "/logs/done.mcap: 100 bytes at mtime_ns 3 -> 100 bytes at mtime_ns 7",
        ),
    ],
)
def test_a_done_log_whose_files_changed_is_refused(identity: list[PartIdentity], then_now: str) -> None:
    """Its results are of a recording since replaced (or rewritten) at its path: they cannot be made again,
    so a batch neither takes them for the new one's nor writes over them."""
    records = {"done": done("done", identity=identity)}
    with pytest.raises(
        BatchError,
        match=re.escape(
            f"done was made from its files as they were (then -> now: {then_now}); "
            "move /out/done.results.mcap away"
        ),
    ):
        plan_batch(LOGS[:1], IDENTITIES, records, {"done.results.mcap"}, "d1", Path("/out"))


def test_a_done_line_of_an_older_version_is_taken_as_done_and_said() -> None:
    records = {"done": done("done", identity=[])}
    plan = plan_batch(LOGS[:1], IDENTITIES, records, {"done.results.mcap"}, "d1", Path("/out"))
    assert ([log.name for log in plan.skipped], plan.run, plan.unverified) == (["done"], [], ["done"])


def _done_by_workers(tasks: Sequence[LogTask], ray: str | None, concurrency: int) -> Iterator[LogRecord]:
    """What the workers yield for `tasks`, without replaying anything: each log done with one result."""
    for task in tasks:
        with LogWriter(task.out / task.log.partial_name) as results:
            results.write(Sample("result/fused", "result", 1, 10), log_time_ns=10)
        paths = [str(p) for p in task.log.paths]
        yield LogRecord(task.log.name, paths, "done", results=task.log.results_name, digest=task.digest)


@pytest.fixture
def batch(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Callable[..., dict[str, Any]]:
    """run_batch on the logs in tmp_path/logs (a.mcap to start with), its workers `_done_by_workers`."""
    monkeypatch.setattr(batch_module, "_records", _done_by_workers)
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs/a.mcap").write_bytes(b"recording 1")
    return lambda out, **options: run_batch([tmp_path / "logs"], out, DEMO, progress=False, **options)


def test_a_compare_that_matched_no_log_is_not_compared(
    batch: Callable[..., dict[str, Any]], tmp_path: Path
) -> None:
    """Pointed at the wrong OTHER_DIR (no log name in common), it said "0 results matched" and exit 0."""
    batch(tmp_path / "old")
    (tmp_path / "logs/b.mcap").write_bytes(b"recording 2")
    summary = batch(tmp_path / "both", compare=tmp_path / "old")  # one in common: the other only missing
    assert summary["run"]["not_compared"] == [] and summary["compare"]["missing"] == ["b"]
    (tmp_path / "logs/a.mcap").unlink()
    summary = batch(tmp_path / "new", compare=tmp_path / "old")
    assert summary["run"]["not_compared"] == ["b"]  # the command's exit 1
    said = format_summary(summary, str(tmp_path / "new"))
    assert f"not in {tmp_path / 'old'}: b (no log of this batch is: is it the batch to compare with?)" in said


def test_a_log_replaced_at_its_path_is_refused_until_its_results_are_moved(
    batch: Callable[..., dict[str, Any]], tmp_path: Path
) -> None:
    out, log = tmp_path / "out", tmp_path / "logs/a.mcap"
    assert batch(out)["run"]["ran"] == 1
    again = batch(out)["run"]
    assert (again["ran"], again["skipped"]) == (0, 1)
    log.write_bytes(b"a shorter one")  # another recording at the same path
    with pytest.raises(
        BatchError, match=f"a was made from its files as they were .then -> now: {log}: 11 bytes"
    ):
        batch(out)
    assert (out / "a.results.mcap").exists()  # the old recording's results are kept
    (out / "a.results.mcap").rename(tmp_path / "a.old.results.mcap")
    assert batch(out)["run"]["ran"] == 1
    with Manifest(out) as manifest:
        (line,) = manifest.records.values()
    assert line.identity == [{"size": log.stat().st_size, "mtime_ns": log.stat().st_mtime_ns}]


def test_compare_refuses_the_batch_itself_and_reports_a_bad_result_per_log(
    batch: Callable[..., dict[str, Any]], tmp_path: Path
) -> None:
    out, other = tmp_path / "out", tmp_path / "other"
    batch(other)
    (tmp_path / "link").symlink_to(out.name)
    batch(out)
    for itself in (out, tmp_path / "link"):
        with pytest.raises(BatchError, match=f"--compare {itself} is this batch's --out"):
            batch(out, compare=itself)
    (other / "a.results.mcap").write_bytes(b"not a log")
    summary = batch(out, compare=other)
    error = f"{other / 'a.results.mcap'}: not an MCAP file"
    assert summary["compare"]["errors"]["a"].startswith(error)
    assert summary["compare"]["logs"] == {}
    assert json.loads((out / SUMMARY_NAME).read_text())["compare"] == summary["compare"]  # written anyway
    assert f"a: NOT COMPARED: {error}" in format_summary(summary, str(out))
    # The command: a comparison it could not make is work asked for and not done, as a failed log is.
    argv = ["batch", str(tmp_path / "logs"), "--out", str(out), "--compare", str(other), "--no-progress"]
    sigterm = signal.getsignal(signal.SIGTERM)  # `batch` takes SIGTERM for itself: give pytest its own back
    try:
        assert main(argv) == 1
        (other / "a.results.mcap").unlink()
        shutil.copy(out / "a.results.mcap", other / "a.results.mcap")
        assert main(argv) == 0
    finally:
        signal.signal(signal.SIGTERM, sigterm)


def _edited(config: Config, section: str, **values: object) -> Config:
    return config.model_copy(update={section: getattr(config, section).model_copy(update=values)})


def test_the_digest_follows_what_decides_results_not_how_fast_they_come() -> None:
    digest = results_digest(DEMO)
    assert results_digest(_edited(DEMO, "model", intra_op_threads=3, providers=["cpu"])) == digest
    assert results_digest(_edited(DEMO, "pipeline", name="other", log_level="debug")) == digest
    assert results_digest(_edited(DEMO, "sync", max_wait_ms=20.0)) != digest
    assert results_digest(_edited(DEMO, "model", unbound_inputs=["camera"])) != digest
    assert results_digest(_edited(DEMO, "model", path="package:surround.onnx")) != digest  # another model


def test_the_digest_follows_a_model_s_external_weights(tmp_path: Path) -> None:
    """A model retrained in place, its weights in a file beside it (ONNX external data) and the graph
    file unchanged: a rerun took the old weights' results as done."""
    import onnx

    path = tmp_path / "model.onnx"
    onnx.save_model(onnx.load(model_path(DEMO)), path, save_as_external_data=True, location="weights")
    config = _edited(DEMO, "model", path=str(path))
    digest = results_digest(config)
    weights = (tmp_path / "weights").read_bytes()
    (tmp_path / "weights").write_bytes(weights[:-1] + bytes([weights[-1] ^ 1]))
    assert results_digest(config) != digest


def test_workers_share_the_cores_and_find_the_model_from_anywhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    relative = _edited(DEMO, "model", path="models/mine.onnx")
    config = _workers_config(relative, threads=2)
    assert config.model.path == str(tmp_path / "models/mine.onnx")
    assert config.model.intra_op_threads == 2
    assert _workers_config(DEMO, 1).model.path == DEMO.model.path  # the shipped model: found by package
    pinned = _edited(DEMO, "model", intra_op_threads=4, path="package:default.onnx")
    assert _workers_config(pinned, 1).model == pinned.model  # the config's own threads are kept


def test_without_ray_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed: importing it fails
    with pytest.raises(BatchError, match=r"--ray needs Ray, .*pip install 'fusion-pipeline\[cluster\]'"):
        import_ray()
    (tmp_path / "a.mcap").write_bytes(b"a recording")
    with pytest.raises(BatchError, match="--ray needs Ray"):
        run_batch([tmp_path / "a.mcap"], tmp_path / "out", DEMO, ray="")
    assert not (tmp_path / "out").exists()  # refused before anything was made


def test_a_worker_stopped_part_way_leaves_no_partial_results(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Ctrl-C reaches the pool's workers too: the log in flight leaves no NAME.results.mcap.partial."""
    partial = tmp_path / "a.results.mcap.partial"

    class Interrupted:
        def run(self, paths: list[Path], out: Path, verify_crcs: bool) -> None:
            out.write_bytes(b"half of the results")
            raise KeyboardInterrupt

    monkeypatch.setattr(worker_module, "_graph", lambda config: (Interrupted(), 0.0))
    (tmp_path / "a.mcap").write_bytes(b"a recording")
    (log,) = find_logs([tmp_path / "a.mcap"])
    with pytest.raises(KeyboardInterrupt):
        run_log(LogTask(log, tmp_path, DEMO, "d"))
    assert not partial.exists()


def test_a_workers_log_lines_name_the_log_they_are_about(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A batch's workers share stderr: a stage's "dropping a message of camera/front" said no log."""

    class Dropping:
        def run(self, paths: list[Path], out: Path, verify_crcs: bool) -> None:
            logging.getLogger("fusion_pipeline.ingest").warning("dropping a message of %s", "camera/front")
            raise LogError("nothing to replay")

    monkeypatch.setattr(worker_module, "_graph", lambda config: (Dropping(), 0.0))
    (tmp_path / "drive-7.mcap").write_bytes(b"a recording")
    (log,) = find_logs([tmp_path / "drive-7.mcap"])
    record = run_log(LogTask(log, tmp_path, DEMO, "d"))
    assert record.status == "failed" and record.error == "nothing to replay"
    assert [r.getMessage() for r in caplog.records] == ["drive-7: dropping a message of camera/front"]
    logging.getLogger("x").warning("after")  # the process's lines are its own again
    assert caplog.records[-1].getMessage() == "after"


def test_the_summary_is_of_every_log_the_manifest_holds(
    batch: Callable[..., dict[str, Any]], tmp_path: Path
) -> None:
    """A batch over some of a directory's logs keeps the others in its summary.json (it replaced the
    fleet's summary by one of the logs named this time)."""
    out = tmp_path / "out"
    batch(out)
    (tmp_path / "more").mkdir()
    (tmp_path / "more/b.mcap").write_bytes(b"recording 2")
    summary = run_batch([tmp_path / "more/b.mcap"], out, DEMO, progress=False)
    assert sorted(summary["logs"]) == ["a", "b"] and summary["batch"]["done"] == 2
    assert summary["run"]["ran"] == 1
    assert sorted(json.loads((out / SUMMARY_NAME).read_text())["logs"]) == ["a", "b"]


def test_a_file_that_takes_the_results_name_while_the_log_runs_is_kept(
    batch: Callable[..., dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def someone_writes_there(tasks: Sequence[LogTask], ray: str | None, n: int) -> Iterator[LogRecord]:
        for record, task in zip(_done_by_workers(tasks, ray, n), tasks, strict=True):
            (task.out / task.log.results_name).write_text("someone else's")
            yield record

    monkeypatch.setattr(batch_module, "_records", someone_writes_there)
    out = tmp_path / "out"
    summary = batch(out)
    assert (out / "a.results.mcap").read_text() == "someone else's"
    assert summary["logs"]["a"]["status"] == "failed"
    assert "a.results.mcap appeared while this log ran: not writing over it" in summary["logs"]["a"]["error"]
    assert not (out / "a.results.mcap.partial").exists()


def test_results_the_directory_refuses_to_take_fail_their_log_and_the_batch_goes_on(
    batch: Callable[..., dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An append-only directory (chattr +a; tmpfs has no such attribute, so the link's refusal is
    injected): a traceback ended the batch and its other logs never ran."""

    def refused(source: object, target: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(batch_module.os, "link", refused)
    (tmp_path / "logs/b.mcap").write_bytes(b"recording 2")
    out = tmp_path / "out"
    summary = batch(out)
    assert [summary["logs"][name]["status"] for name in ("a", "b")] == ["failed", "failed"]
    said = f"{out / 'a.results.mcap'}: cannot link the results into place: Operation not permitted"
    assert summary["logs"]["a"]["error"] == said
    assert not list(out.glob("*.partial"))


def test_a_ray_address_ray_cannot_take_is_one_line_and_leaves_nothing(tmp_path: Path) -> None:
    """It left the --out it made (and its parents), holding an empty manifest; a directory that was
    there stays."""
    pytest.importorskip("ray")
    (tmp_path / "a.mcap").write_bytes(b"")
    (tmp_path / "there").mkdir()
    for out in (tmp_path / "new" / "out", tmp_path / "there"):
        with pytest.raises(BatchError, match="^--ray foo: Invalid address format: foo$"):
            run_batch([tmp_path / "a.mcap"], out, DEMO, ray="foo")
    assert not (tmp_path / "new").exists()  # --out and the parent it made
    assert (tmp_path / "there").is_dir() and not list((tmp_path / "there").iterdir())


def test_pool_workers_die_with_the_batch() -> None:
    """A batch killed with SIGKILL left its spawned workers running for good (PPID 1)."""
    code = (
        "import time\n"
        "from fusion_pipeline.offline.batch import pool_records\n"
        "next(pool_records([60], 1, time.sleep))\n"  # a worker busy for a minute
    )
    batch = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (workers := _workers_of(batch.pid)):
            time.sleep(0.1)
        assert workers, "no pool worker started"
        batch.kill()
        batch.wait(timeout=5)
        _, alive = psutil.wait_procs(workers, timeout=10)
        assert not alive, f"workers outlived the batch: {alive}"
    finally:
        batch.kill()


def test_a_hangup_ends_no_batch_started_under_nohup() -> None:
    """The workers took SIGHUP as Ctrl-C though the batch ignored it: a terminal closing ended a
    `nohup` batch with exit 130."""
    code = (
        "import os, signal, threading, time\n"
        "from fusion_pipeline.offline.batch import pool_records\n"
        "signal.signal(signal.SIGHUP, signal.SIG_IGN)\n"  # as nohup starts it
        "os.setpgrp()\n"
        "threading.Timer(2.5, os.killpg, (0, signal.SIGHUP)).start()\n"  # the terminal closes
        "print(list(pool_records([4], 1, time.sleep)))\n"  # a worker busy for 4 s meanwhile
    )
    batch = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert (batch.returncode, batch.stdout) == (0, "[None]\n"), batch.stderr


def _workers_of(pid: int) -> list[psutil.Process]:
    """The pool's workers: the children that run multiprocessing's spawn entry point."""
    return [p for p in psutil.Process(pid).children() if any("spawn_main" in part for part in p.cmdline())]


@pytest.mark.parametrize("done_before", [True, False])
def test_a_stopped_batch_says_so_and_how_to_finish(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], done_before: bool
) -> None:
    """Ctrl-C ended it with exit 130 and not a word; stopped before its first log, it named the manifest
    it had just removed."""

    def interrupted(*args: object, **options: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(batch_module, "run_batch", interrupted)
    (tmp_path / "a.mcap").write_bytes(b"")
    if done_before:
        (tmp_path / "out").mkdir()
        (tmp_path / "out" / "manifest.jsonl").write_text(LogRecord("b", ["b.mcap"], "done").to_line() + "\n")
    sigterm = signal.getsignal(signal.SIGTERM)  # `batch` takes SIGTERM for itself: give pytest its own back
    try:
        assert (
            main(["batch", str(tmp_path / "a.mcap"), "--out", str(tmp_path / "out"), "--no-progress"]) == 130
        )
    finally:
        signal.signal(signal.SIGTERM, sigterm)
    said = capsys.readouterr().err
    if done_before:
        assert f"stopped; the logs done so far are in {tmp_path / 'out'}/manifest.jsonl" in said
    else:
        assert "fusion-pipeline batch: stopped; no log had finished, nothing written" in said


def test_the_exit_status_is_of_the_logs_named_not_of_the_whole_manifest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the summary over the whole manifest, an earlier failed log made a later batch of other logs
    exit 1."""

    def a_fails(tasks: Sequence[LogTask], ray: str | None, n: int) -> Iterator[LogRecord]:
        for record in _done_by_workers(tasks, ray, n):
            if record.log == "a":
                record = LogRecord("a", record.paths, "failed", error="cut short", digest=record.digest)
            yield record

    monkeypatch.setattr(batch_module, "_records", a_fails)
    for name in ("a", "b"):
        (tmp_path / f"{name}.mcap").write_bytes(name.encode())
    out = str(tmp_path / "out")
    sigterm = signal.getsignal(signal.SIGTERM)  # `batch` takes SIGTERM for itself: give pytest its own back
    try:
        assert main(["batch", str(tmp_path / "a.mcap"), "--out", out, "--no-progress"]) == 1
        assert main(["batch", str(tmp_path / "b.mcap"), "--out", out, "--no-progress"]) == 0
    finally:
        signal.signal(signal.SIGTERM, sigterm)
    summary = json.loads((tmp_path / "out" / SUMMARY_NAME).read_text())
    assert summary["logs"]["a"]["status"] == "failed" and summary["run"]["failed"] == []


def test_a_directory_of_results_files_or_dead_links_says_what_it_holds(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`no .mcap log in this directory` of a directory holding drive.results.mcap; a link to nothing was
    left out without a word."""
    folder = tmp_path / "logs"
    folder.mkdir()
    (folder / "drive.results.mcap").write_bytes(b"")
    with pytest.raises(
        BatchError, match=r"only results files, which a batch does not take: drive.results.mcap"
    ):
        find_logs([folder])
    (folder / "gone.mcap").symlink_to(tmp_path / "nowhere.mcap")
    (folder / "drive.mcap").write_bytes(b"")
    assert [log.name for log in find_logs([folder])] == ["drive"]
    assert "not run, links to nothing: gone.mcap" in caplog.text
