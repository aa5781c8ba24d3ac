"""A batch's manifest: DIR/manifest.jsonl, one JSON line per log each time a log finishes.

Lines are only appended, so a batch killed at any point leaves every line it wrote whole but maybe the
last, which the next batch cuts off; the last line of a log wins. A rerun reads the manifest to skip the
logs that are done and retry the failed ones. A batch holds an exclusive lock on the file (flock) for
its whole life, so two batches never write one directory.

Each line names the version of the log it was made from (`identity`: each file's size and modification
time), so results of a log since replaced at the same path are never taken for its own. Every value of a
line is checked against the type its field declares: a line of the wrong shape is a BatchError naming
the file, the line and the field, never a crash of whatever reads it later.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, field, fields
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import pydantic
from typing_extensions import TypedDict  # pydantic reads typing's TypedDict only from Python 3.12 on

from fusion_pipeline.config import validation_problems
from fusion_pipeline.offline.errors import BatchError

__all__ = [
    "MANIFEST_NAME",
    "Counts",
    "LogRecord",
    "Manifest",
    "MomentsJson",
    "PartIdentity",
    "StatsJson",
    "identify",
    "identity_changes",
    "read_records",
    "same_files",
]

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.jsonl"

Status = Literal["done", "failed"]


class PartIdentity(TypedDict):
    """One file of a log as it was when the batch ran it: a file replaced or rewritten at the same path
    has another size or modification time (reading every byte of a log to hash it would cost a replay's
    worth of reading)."""

    size: int
    mtime_ns: int


class Counts(TypedDict, total=False):
    """A done log's counts, as worker.run_log writes them from its OfflineReport."""

    messages: int
    sent: dict[str, int]
    sets: int
    results: int
    drops: dict[str, dict[str, int]]
    provider: str
    absent: list[str]  # config streams the log holds nothing for
    left_out: list[str]  # log streams not replayed (not in the config)


class MomentsJson(TypedDict):
    """summary.Moments as JSON."""

    n: int
    mean: float
    m2: float
    min: float
    max: float


class StatsJson(TypedDict, total=False):
    """summary.LogStats as JSON; empty for a failed log."""

    results: int
    patterns: dict[str, int]
    outputs: dict[str, MomentsJson]
    classes: dict[str, dict[str, int]]


# strict: a manifest is JSON, whose true is no count and whose "3" is no number; every field, nested
# ones too, is checked against its type (a wrong one crashed whatever read it later).
@pydantic.dataclasses.dataclass(config=pydantic.ConfigDict(strict=True))
class LogRecord:
    """One manifest line: what became of one log."""

    log: str  # the log's name (its file's stem; a split log's name before _000): its results' name
    paths: list[str]  # its files, split parts in order, absolute
    status: Status
    results: str = ""  # the results file, in the batch's directory; "" when failed
    counts: Counts = field(default_factory=Counts)
    #: started and finished (UNIX s), task_s (the whole task), setup_s (building the graph, once per
    #: worker), wall_s, log_s, cpu_s and speedup (the replay, as OfflineReport has them)
    timings: dict[str, float] = field(default_factory=dict)
    error: str = ""
    stats: StatsJson = field(default_factory=StatsJson)  # summary.LogStats of the results
    digest: str = ""  # batch.results_digest of the config that made the results
    worker: str = ""  # HOST:PID of the process that ran it
    #: Each of `paths` as the batch found it before running the log; empty in a line of a version before
    #: this field (which files made those results is then unknown).
    identity: list[PartIdentity] = field(default_factory=list)

    def to_line(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: Any) -> LogRecord:
        """A record from a parsed line, every field of its declared type; ValueError naming the field."""
        if not isinstance(raw, dict):
            raise ValueError("not a JSON object")
        known = {f.name for f in fields(cls)}
        try:
            record = cls(**{k: v for k, v in raw.items() if k in known})  # later versions may add keys
        except pydantic.ValidationError as exc:
            raise ValueError("; ".join(validation_problems(exc))) from None
        if record.identity and len(record.identity) != len(record.paths):
            raise ValueError(f"{len(record.paths)} paths but an identity for {len(record.identity)}")
        return record


def identify(paths: Sequence[Path]) -> list[PartIdentity]:
    """The identity of each file of a log now; BatchError naming a file that cannot be read."""
    identity = []
    for path in paths:
        try:
            stat = path.stat()
        except OSError as exc:
            raise BatchError(f"{path}: cannot read: {exc.strerror}") from exc
        identity.append(PartIdentity(size=stat.st_size, mtime_ns=stat.st_mtime_ns))
    return identity


def identity_changes(
    paths: Sequence[str], before: Sequence[PartIdentity], now: Sequence[PartIdentity]
) -> str:
    """The files of `paths` whose identity differs between `before` and `now`, in words; "" if none.
    Only the keys PartIdentity names count: a later version may record more."""
    changed = [
        f"{path}: {old['size']} bytes at mtime_ns {old['mtime_ns']} -> "
        f"{new['size']} bytes at mtime_ns {new['mtime_ns']}"
        for path, old, new in zip(paths, before, now, strict=True)
        if (old["size"], old["mtime_ns"]) != (new["size"], new["mtime_ns"])
    ]
    return "; ".join(changed)


def same_files(then: Sequence[str], now: Sequence[str]) -> bool:
    """Whether the paths `then` and `now` name the same files, one by one (through a link, a mount)."""
    try:
        return len(then) == len(now) and all(os.path.samefile(a, b) for a, b in zip(then, now, strict=True))
    except OSError:  # one of them is gone
        return False


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
        self._created = not self.path.exists()
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
        # A batch that fails or stops before its first line leaves no manifest it made (removed while
        # still locked: no other batch writes to it meanwhile).
        if exc_type is not None and self._created and os.fstat(self._file.fileno()).st_size == 0:
            self.path.unlink(missing_ok=True)
        self.close()
