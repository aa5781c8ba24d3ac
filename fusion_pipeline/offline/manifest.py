"""A batch's manifest: DIR/manifest.jsonl, one JSON line per log each time a log finishes.

Lines are only appended, so a batch killed at any point leaves every line it wrote whole but maybe the
last, which the next batch cuts off; the last line of a log wins. A rerun reads the manifest to skip the
logs that are done and retry the failed ones. A batch holds an exclusive lock on the file (flock) for
its whole life, so two batches never write one directory.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from fusion_pipeline.offline.errors import BatchError

__all__ = ["MANIFEST_NAME", "LogRecord", "Manifest", "read_records"]

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.jsonl"

Status = Literal["done", "failed"]


@dataclass
class LogRecord:
    """One manifest line: what became of one log."""

    log: str  # the log's name (its file's stem; a split log's name before _000): its results' name
    paths: list[str]  # its files, split parts in order, absolute
    status: Status
    results: str = ""  # the results file, in the batch's directory; "" when failed
    counts: dict[str, Any] = field(default_factory=dict)  # messages, sent, sets, results, drops, provider
    #: started and finished (UNIX s), task_s (the whole task), setup_s (building the graph, once per
    #: worker), wall_s, log_s, cpu_s and speedup (the replay, as OfflineReport has them)
    timings: dict[str, float] = field(default_factory=dict)
    error: str = ""
    stats: dict[str, Any] = field(default_factory=dict)  # summary.LogStats of the results, as JSON
    digest: str = ""  # batch.results_digest of the config that made the results
    worker: str = ""  # HOST:PID of the process that ran it

    def to_line(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: Any) -> LogRecord:
        """A record from a parsed line; ValueError naming what is wrong."""
        if not isinstance(raw, dict):
            raise ValueError("not a JSON object")
        missing = [name for name in ("log", "paths", "status") if name not in raw]
        if missing:
            raise ValueError(f"no {', '.join(missing)}")
        if raw["status"] not in ("done", "failed"):
            raise ValueError(f"status {raw['status']!r} is neither 'done' nor 'failed'")
        if not isinstance(raw["log"], str) or not isinstance(raw["paths"], list):
            raise ValueError("log must be a string and paths a list")
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known})  # later versions may add keys


def read_records(text: str, where: str) -> dict[str, LogRecord]:
    """The last record of each log in the manifest `text` (read from `where`, for messages).

    A last line without its newline is a line a killed batch did not finish: it is left out. Any other
    line that is not a record is a BatchError naming its line number.
    """
    lines = text.split("\n")
    if lines[-1]:
        log.warning("%s: its last line is cut short (a batch killed while writing it); ignoring it", where)
    records: dict[str, LogRecord] = {}
    for number, line in enumerate(lines[:-1], 1):
        if not line.strip():
            continue
        try:
            record = LogRecord.from_json(json.loads(line))
        except ValueError as exc:  # json.JSONDecodeError is one
            raise BatchError(f"{where}, line {number}: not a manifest record: {exc}") from None
        records[record.log] = record
    return records


class Manifest:
    """DIR/manifest.jsonl, locked, with its records (`records`: the last one per log)."""

    def __init__(self, out: Path) -> None:
        self.path = out / MANIFEST_NAME
        try:
            self._file = open(self.path, "a+b")  # noqa: SIM115  # held open (and locked) until close
        except OSError as exc:
            raise BatchError(f"{self.path}: cannot open: {exc.strerror}") from exc
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.close()
            raise BatchError(f"{self.path}: another batch is running in {out}") from None
        self._file.seek(0)
        data = self._file.read()
        self.records = read_records(data.decode(errors="replace"), str(self.path))
        whole = data.rfind(b"\n") + 1
        if whole < len(data):  # the line a killed batch was writing: gone, so the next starts a line
            self._file.truncate(whole)

    def append(self, record: LogRecord) -> None:
        """Write `record` as a new line, on disk before this returns (a kill right after keeps it)."""
        self._file.write(record.to_line().encode() + b"\n")
        self._file.flush()
        os.fsync(self._file.fileno())
        self.records[record.log] = record

    def close(self) -> None:
        self._file.close()  # releases the lock

    def __enter__(self) -> Manifest:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
