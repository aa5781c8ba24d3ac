"""`fusion-pipeline batch` as a user runs it, on 8 short demo logs and a copy of one cut short.

On a local Ray (`--ray`): the batch is killed with SIGKILL once some logs are done, then run again; the
rerun redoes only the logs the first run had not finished, the log cut short is failed with its error
both times, and the others end with their results and one done line each. The local pool runs three of
the logs with --compare against the Ray run: the same results. A pool whose worker process dies reports
the logs it held as failed and runs the rest in a new pool."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import psutil
import pytest
from dying_worker import run_or_die
from paths import ROOT

from fusion_pipeline.config import load_config
from fusion_pipeline.offline import BatchLog, LogRecord
from fusion_pipeline.offline.batch import pool_records
from fusion_pipeline.offline.worker import LogTask

sys.path.insert(0, str(ROOT / "tools"))  # make_sample_log is a script of tools/, not a package

from make_sample_log import DEFAULT_START_S, make_log  # noqa: E402

LOGS = 8
LOG_S = 2.0
CUT = "cut"  # the log cut short


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory of LOGS demo logs, each LOG_S long from its own start, and one cut to 60 % of a log."""
    folder = tmp_path_factory.mktemp("logs")
    config = load_config(None)
    for i in range(LOGS):
        make_log(config, folder / f"drive{i}.mcap", LOG_S, (DEFAULT_START_S + 100 * i) * 1_000_000_000)
    whole = (folder / "drive0.mcap").read_bytes()
    (folder / f"{CUT}.mcap").write_bytes(whole[: len(whole) * 6 // 10])
    return folder


def _batch(*args: str) -> list[str]:
    return [sys.executable, "-m", "fusion_pipeline.cli", "batch", *args, "--no-progress"]


def _lines(out: Path) -> list[dict]:
    manifest = out / "manifest.jsonl"
    text = manifest.read_text() if manifest.exists() else ""
    return [json.loads(line) for line in text.split("\n")[:-1]]  # whole lines: a killed batch may cut one


def _done(lines: list[dict]) -> list[str]:
    return [line["log"] for line in lines if line["status"] == "done"]


def _finished(out: Path) -> list[str]:
    """Logs done and renamed into place (a kill between the two leaves a log the rerun redoes)."""
    return [name for name in _done(_lines(out)) if (out / f"{name}.results.mcap").exists()]


def _kill_session(leader: int) -> None:
    """SIGKILL the batch and every process it started (Ray's own included): all of its session."""
    for process in psutil.process_iter():
        try:
            if os.getsid(process.pid) == leader:
                process.kill()
        except (ProcessLookupError, psutil.Error):
            pass


@pytest.fixture(scope="module")
def ray_run(logs: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The Ray batch killed midway, then run again to the end."""
    out = tmp_path_factory.mktemp("ray")
    command = _batch(str(logs), "--out", str(out), "--ray", "--workers", "2")
    stderr = out.parent / "first.stderr"
    with open(stderr, "w") as err:
        first = subprocess.Popen(
            command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 120
        while not _finished(out) and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        killed_at = time.time()
    finally:
        _kill_session(first.pid)
        first.wait()
    before = _lines(out)
    mtimes = {name: (out / f"{name}.results.mcap").stat().st_mtime_ns for name in _finished(out)}
    assert 1 <= len(mtimes) < LOGS, f"not killed midway: {_done(before)}\n{stderr.read_text()}"
    rerun = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=180)
    return {
        "out": out,
        "before": before,
        "mtimes": mtimes,
        "killed_at": killed_at,
        "rerun": rerun,
        "after": _lines(out),
        "summary": json.loads((out / "summary.json").read_text()),
    }


def test_the_rerun_redoes_only_the_logs_the_killed_batch_had_not_finished(ray_run: dict) -> None:
    out, before, after = ray_run["out"], ray_run["before"], ray_run["after"]
    assert ray_run["rerun"].returncode == 1, ray_run["rerun"].stderr  # 1: a log failed (the cut one)
    assert after[: len(before)] == before  # the manifest only grew
    finished_first = list(ray_run["mtimes"])
    # The rerun did each unfinished log once, and none of the finished ones.
    assert Counter(_done(after[len(before) :])) == {
        f"drive{i}": 1 for i in range(LOGS) if f"drive{i}" not in finished_first
    }
    for name in finished_first:  # untouched by the rerun
        assert (out / f"{name}.results.mcap").stat().st_mtime_ns == ray_run["mtimes"][name]
    for line in after[len(before) :]:
        assert line["log"] not in finished_first
        assert line["timings"]["started"] >= ray_run["killed_at"]
    run = ray_run["summary"]["run"]
    assert (run["runner"], run["skipped"], run["ran"]) == (
        "ray (local)",
        len(finished_first),
        LOGS + 1 - len(finished_first),
    )


def test_every_log_ends_with_its_results_and_the_cut_one_with_its_error(ray_run: dict, logs: Path) -> None:
    out, after = ray_run["out"], ray_run["after"]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"drive{i}.results.mcap" for i in range(LOGS)] + ["manifest.jsonl", "summary.json"]
    )  # no results of the cut log, nothing half written left behind
    cut = [line for line in after if line["log"] == CUT]
    assert cut and all(line["status"] == "failed" for line in cut)
    assert cut[-1]["error"].startswith(f"log cut short: {logs / CUT}.mcap: ")
    summary = ray_run["summary"]
    assert (summary["batch"]["done"], summary["batch"]["failed"]) == (LOGS, 1)
    assert summary["logs"][CUT] == {"status": "failed", "error": cut[-1]["error"]}
    last = {line["log"]: line for line in after}
    for i in range(LOGS):
        line, entry = last[f"drive{i}"], summary["logs"][f"drive{i}"]
        assert line["counts"]["results"] == line["stats"]["results"] == entry["results"] > 0
        assert sum(entry["patterns"].values()) == entry["results"]
        assert sum(entry["outputs"]["class_logits"]["classes"].values()) == entry["results"]
    assert summary["batch"]["results"] == sum(summary["logs"][f"drive{i}"]["results"] for i in range(LOGS))
    assert f"{CUT}: FAILED: log cut short" in ray_run["rerun"].stderr


def test_the_local_pool_gives_the_same_results_as_ray(ray_run: dict, logs: Path, tmp_path: Path) -> None:
    picked = [str(logs / f"drive{i}.mcap") for i in (1, 4, 6)]
    out = tmp_path / "pool"
    done = subprocess.run(
        _batch(*picked, "--out", str(out), "--workers", "2", "--compare", str(ray_run["out"])),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["run"]["runner"] == "pool"
    compare = summary["compare"]
    assert list(compare["logs"]) == ["drive1", "drive4", "drive6"] and compare["missing"] == []
    for name, comparison in compare["logs"].items():
        ray_entry = ray_run["summary"]["logs"][name]
        assert summary["logs"][name] == {**ray_entry, "speedup": summary["logs"][name]["speedup"]}
        assert comparison["matched"] == ray_entry["results"]
        assert comparison["only_here"] == comparison["only_other"] == 0
        assert comparison["outputs"]["class_logits"]["class_agreement"] == 1.0
        assert all(
            figures["mean_abs_diff"] == 0.0
            for o, figures in comparison["outputs"].items()
            if o != "class_logits"
        )
    assert "compared with" in done.stderr and "class_logits agree 100.0 %" in done.stderr


def test_a_pool_whose_worker_dies_fails_the_logs_it_held_and_runs_the_rest(tmp_path: Path) -> None:
    config = load_config(None)
    names = ["a", "dies", "b", "c", "d"]
    tasks = [LogTask(BatchLog(name, (tmp_path / f"{name}.mcap",)), tmp_path, config, "d") for name in names]
    records: list[LogRecord] = list(pool_records(tasks, 2, run=run_or_die))
    assert sorted(r.log for r in records) == sorted(names)  # each log reported once
    by_name = {r.log: r for r in records}
    failed = sorted(r.log for r in records if r.status == "failed")
    # The log that killed its worker, and the one other log in flight with it, if any (which one depends
    # on timing: "a", or "b" when "a" finished first); every other log completes, in a new pool.
    assert "dies" in failed and len(failed) <= 2, failed
    for name in failed:
        assert (
            by_name[name].error == f"a worker process died while this log and {len(failed) - 1} other(s) ran"
        )
    assert all(by_name[name].status == "done" for name in names if name not in failed)


@pytest.mark.parametrize(
    ("runner", "signum", "group"),
    [
        ([], signal.SIGTERM, False),
        (["--ray"], signal.SIGTERM, False),
        ([], signal.SIGINT, True),
        ([], signal.SIGTERM, True),
    ],
    ids=["pool", "ray", "pool-ctrl-c", "pool-group-sigterm"],
)
def test_a_stop_ends_the_batch_and_leaves_no_partial_results(
    logs: Path, tmp_path: Path, runner: list[str], signum: int, group: bool
) -> None:
    """A service manager's stop (SIGTERM to the batch, or to its whole group) and a terminal's Ctrl-C
    (SIGINT to the group): it left the logs in flight as .partial files, under Ray (which took SIGTERM
    over) exited 15 with a stack dump and its agents still running; and to the group, each idle pool
    worker printed a KeyboardInterrupt traceback from the pool's queue."""
    out = tmp_path / "out"
    command = _batch(str(logs), "--out", str(out), "--workers", "2", *runner)
    batch = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not _finished(out) and batch.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert batch.poll() is None and len(_finished(out)) < LOGS, "not stopped midway"
        (os.killpg if group else os.kill)(batch.pid, signum)
        _, stderr = batch.communicate(timeout=60)
    finally:
        _kill_session(batch.pid)  # whatever would be left, so that a failure leaves nothing running
    assert batch.returncode == 130, stderr
    assert stderr.rstrip().endswith(
        f"fusion-pipeline batch: stopped; the logs done so far are in {out}/manifest.jsonl, and the same "
        "command again runs the rest"
    )
    assert "Traceback" not in stderr, stderr
    assert not list(out.glob("*.partial")), sorted(p.name for p in out.iterdir())
    # Nothing of it runs on (multiprocessing's resource tracker exits once it sees the batch gone).
    deadline = time.monotonic() + 10
    while (left := [p.cmdline() for p in psutil.process_iter() if _in_session(p, batch.pid)]) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.1)
    assert left == [], left


def _in_session(process: psutil.Process, leader: int) -> bool:
    try:
        return os.getsid(process.pid) == leader and process.status() != psutil.STATUS_ZOMBIE
    except (ProcessLookupError, psutil.Error):
        return False


def test_a_sigterm_while_ray_starts_stops_the_batch_and_what_ray_started() -> None:
    """Ray's own SIGTERM handler, in place while ray.init runs, exited 15 with no word of the batch, and
    sometimes left Ray's agents running."""
    script = ROOT / "tests" / "support" / "ray_stopped_while_starting.py"
    child = subprocess.Popen(
        [sys.executable, str(script)], cwd=ROOT, stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        stdout, _ = child.communicate(timeout=120)
    finally:
        _kill_session(child.pid)
    assert (child.returncode, stdout) == (130, "stopped\n")
    deadline = time.monotonic() + 10
    while (left := [p.cmdline() for p in psutil.process_iter() if _in_session(p, child.pid)]) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.1)
    assert left == [], left
