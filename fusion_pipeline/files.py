"""Output files that are never written over and never left half written; what an input path is."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from fusion_pipeline.errors import FusionError

__all__ = ["new_file", "not_a_file", "write_new", "write_new_text"]


@contextmanager
def new_file(path: Path, error: type[FusionError] = FusionError) -> Iterator[Path]:
    """A file to write beside `path`, linked into place when the block ends without an exception: an
    existing file is never overwritten (`error` says so), and a failed write leaves nothing behind."""
    if path.exists():
        raise error(f"{path}: exists already, not overwriting it")
    partial = path.with_name(f".{os.getpid()}.{path.name}")  # same folder: link(2) needs one file system
    try:
        yield partial
        try:
            os.link(partial, path)
        except FileExistsError:
            raise error(f"{path}: exists already, not overwriting it") from None
    finally:
        partial.unlink(missing_ok=True)


def write_new(path: Path, write: Callable[[Path], object], error: type[FusionError] = FusionError) -> None:
    """`write(partial)` to a file beside `path`, then link it into place (`new_file`). An OSError on the
    way (a full disk, a file system that takes no files) is `error`, naming `path`."""
    try:
        with new_file(path, error) as partial:
            write(partial)
    except OSError as exc:
        detail = exc.strerror or str(exc)
        if exc.filename and not str(exc.filename).endswith(path.name):  # another file than the output
            detail = f"{exc.filename}: {detail}"
        raise error(f"{path}: cannot be written ({detail})") from exc


def write_new_text(path: Path, text: str, error: type[FusionError] = FusionError) -> None:
    """`text` into the new file `path` (`write_new`): a report, a table, a JSON document."""
    write_new(path, lambda partial: partial.write_text(text), error)


def not_a_file(path: Path, what: str) -> str:
    """Why `path` is not a regular file to read as `what` ("log file", "model file"), or "" where it is:
    a FIFO or a device given as one exists, and "no such file" would send its user looking for it."""
    if path.is_file():
        return ""
    if path.is_dir():
        return f"a directory, not a {what}"
    if path.exists():
        return f"not a regular file (a FIFO, a socket or a device), not a {what}"
    return f"no such {what}"
