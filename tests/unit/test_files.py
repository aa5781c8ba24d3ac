"""New output files: never over an existing one, never half written under their name."""

from __future__ import annotations

from pathlib import Path

import pytest

from fusion_pipeline.errors import FusionError
from fusion_pipeline.files import new_file, write_new


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
