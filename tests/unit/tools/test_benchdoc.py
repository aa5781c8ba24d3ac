"""tools/benchdoc.py: each benchmark's --write replaces its own section of BENCHMARKS.md and nothing else."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from paths import ROOT

# The tools are scripts run as `python tools/NAME.py` (their folder on sys.path), not a package.
sys.path.insert(0, str(ROOT / "tools"))

import bench_sync  # noqa: E402
import bench_sync_node  # noqa: E402
from benchdoc import read_section, replace_section, split_at  # noqa: E402

DOC = """# Benchmarks

## Synchronizer

old sync table

### Live node

old live figures

## Inference

old inference

## Transport

old transport
"""


@pytest.fixture
def doc(tmp_path: Path) -> Path:
    path = tmp_path / "docs" / "BENCHMARKS.md"
    path.parent.mkdir()
    path.write_text(DOC)
    return path


def test_replace_keeps_the_other_sections(doc: Path) -> None:
    replace_section(doc, "## Inference\n\nnew inference\n")
    assert doc.read_text() == DOC.replace("old inference", "new inference")


def test_replace_the_last_section_ends_the_file_in_one_newline(doc: Path) -> None:
    replace_section(doc, "## Transport\n\nnew transport\n\n\n")
    assert doc.read_text() == DOC.replace("old transport", "new transport")


def test_a_section_without_its_blank_line_gets_one_before_the_next(doc: Path) -> None:
    replace_section(doc, "## Inference\n\nno trailing newline")
    assert "no trailing newline\n\n## Transport\n" in doc.read_text()


def test_append_when_absent(doc: Path) -> None:
    replace_section(doc, "## End to end\n\ne2e\n")
    assert doc.read_text() == DOC + "\n## End to end\n\ne2e\n"


def test_missing_file_is_created_with_a_title(tmp_path: Path) -> None:
    path = tmp_path / "docs" / "BENCHMARKS.md"
    replace_section(path, "## Inference\n\nfirst\n")
    assert path.read_text() == "# Benchmarks\n\n## Inference\n\nfirst\n"


def test_a_deeper_heading_of_the_same_name_is_not_the_section(doc: Path) -> None:
    path = doc.parent / "other.md"
    path.write_text("# Benchmarks\n\n## Notes\n\n### Inference\n\nsub\n")
    replace_section(path, "## Inference\n\nnew\n")
    assert path.read_text() == "# Benchmarks\n\n## Notes\n\n### Inference\n\nsub\n\n## Inference\n\nnew\n"


def test_a_section_must_start_with_its_heading(doc: Path) -> None:
    with pytest.raises(ValueError, match="'## ' heading"):
        replace_section(doc, "Inference\n\nno heading\n")
    assert doc.read_text() == DOC


def test_read_section_and_split_at(doc: Path) -> None:
    section = read_section(doc, "## Synchronizer")
    assert section == "## Synchronizer\n\nold sync table\n\n### Live node\n\nold live figures\n\n"
    assert split_at(section, "### Live node") == (
        "## Synchronizer\n\nold sync table\n\n",
        "### Live node\n\nold live figures\n\n",
    )
    assert split_at(section, "### Absent") == (section, "")
    assert read_section(doc, "## End to end") is None


def test_bench_sync_keeps_the_live_node_part(doc: Path) -> None:
    bench_sync.write(doc, "## Synchronizer\n\nnew sync table\n")
    assert doc.read_text() == DOC.replace("old sync table", "new sync table")


def test_bench_sync_node_replaces_only_the_live_node_part(doc: Path) -> None:
    bench_sync_node.write_subsection(doc, "### Live node\n\nnew live figures\n")
    assert doc.read_text() == DOC.replace("old live figures", "new live figures")
    doc.write_text(DOC.replace("### Live node\n\nold live figures\n\n", ""))
    bench_sync_node.write_subsection(doc, "### Live node\n\nnew live figures\n")
    assert doc.read_text() == DOC.replace("old live figures", "new live figures")


def test_bench_sync_node_needs_the_synchronizer_section(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="no '## Synchronizer' section"):
        bench_sync_node.write_subsection(tmp_path / "BENCHMARKS.md", "### Live node\n\nfigures\n")
