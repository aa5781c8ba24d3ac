"""New output files: never over an existing one, never half written under their name."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from fusion_pipeline.errors import FusionError
from fusion_pipeline.files import new_file, write_new, write_new_text


def test_a_new_file_appears_whole_or_not_at_all(tmp_path: Path) -> None:
    path = tmp_path / "out.json"
    with pytest.raises(RuntimeError), new_file(path) as partial:
        partial.write_text("half")
        raise RuntimeError("the write failed")
    assert list(tmp_path.iterdir()) == []
    write_new(path, lambda partial: partial.write_text("whole"))
    assert path.read_text() == "whole" and list(tmp_path.iterdir()) == [path]
    with pytest.raises(FusionError, match="exists already, not overwriting it"):
        write_new(path, lambda partial: partial.write_text("again"))
    assert path.read_text() == "whole" and list(tmp_path.iterdir()) == [path]


def test_a_file_that_cannot_be_written_is_an_error_naming_it(tmp_path: Path) -> None:
    """A full disk mid-write, or a file system that takes no files (/proc): the caller's error, not an
    OSError traceback after the work was done, and nothing left behind."""
    path = tmp_path / "out.json"

    def disk_full(partial: Path) -> None:
        partial.write_text("half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(FusionError, match=rf"^{path}: cannot be written \(No space left on device\)$"):
        write_new(path, disk_full)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(FusionError, match=r"^/proc/fp-summary\.json: cannot be written"):
        write_new_text(Path("/proc/fp-summary.json"), "{}")
