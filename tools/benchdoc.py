"""What the tools/bench_*.py scripts share: rewriting their section of docs/BENCHMARKS.md, and the
machine line of their reports.

Each benchmark owns one '## ' section of the file. Its --write replaces that section (from its heading
line up to the next '## ' heading line, or the end of the file) or appends it when the file has none, and
leaves every other section as it is, so that the benchmarks can be rerun one at a time. The tools are run
as `python tools/NAME.py`, which puts this folder on sys.path: they import this module as `benchdoc`.
"""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path

__all__ = ["BENCHMARKS", "machine", "read_section", "replace_section", "split_at"]

BENCHMARKS = Path(__file__).resolve().parent.parent / "docs" / "BENCHMARKS.md"
NEW_FILE = "# Benchmarks\n"  # what a missing file starts as
_SECTION_START = re.compile(r"^## ", re.M)


def machine() -> str:
    """The machine a report was measured on, e.g. 'x86_64, 2 CPUs'."""
    return f"{platform.machine()}, {os.cpu_count()} CPUs"


def _heading_at(text: str, heading: str, start: int = 0) -> int:
    """Where the line HEADING stands in TEXT, or -1 (a line of its own: '## X' in '### X' is not it)."""
    match = re.compile(rf"^{re.escape(heading)}$", re.M).search(text, start)
    return -1 if match is None else match.start()


def _span(text: str, heading: str) -> tuple[int, int] | None:
    """Start and end of the '## ' section HEADING in TEXT, or None where TEXT has no such section."""
    start = _heading_at(text, heading)
    if start < 0:
        return None
    end = _SECTION_START.search(text, start + len(heading))
    return start, len(text) if end is None else end.start()


def _heading(section: str) -> str:
    heading = section.lstrip("\n").partition("\n")[0]
    if not heading.startswith("## "):
        raise ValueError(f"a section starts with its '## ' heading line, not {heading!r}")
    return heading


def read_section(path: Path, heading: str) -> str | None:
    """The section HEADING of the markdown file PATH, heading line included; None if it has none."""
    text = path.read_text() if path.is_file() else ""
    span = _span(text, _heading(heading))
    return None if span is None else text[span[0] : span[1]]


def replace_section(path: Path, section: str) -> None:
    """Replace the section of PATH that has SECTION's heading (its first line) by SECTION, or append it.

    The rest of the file stays as it is; one blank line separates SECTION from the next section and the
    file ends in a single newline. A missing file is created, starting with a '# Benchmarks' title.
    """
    heading = _heading(section)
    section = section.strip("\n") + "\n"
    text = path.read_text() if path.is_file() else NEW_FILE
    span = _span(text, heading)
    if span is None:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        start, end = span
        text = text[:start] + section + ("\n" + text[end:] if end < len(text) else "")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def split_at(section: str, subheading: str) -> tuple[str, str]:
    """SECTION cut before its line SUBHEADING: (what comes before, SUBHEADING to the end of SECTION);
    (SECTION, "") where SECTION has no such line."""
    at = _heading_at(section, subheading)
    return (section, "") if at < 0 else (section[:at], section[at:])
