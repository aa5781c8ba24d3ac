"""What to install for an optional part of the package: its extra, and the extra's packages by name.

A CPU-only install (README, "Install") must not take an extra by name: pip would pull onnxruntime-gpu
over the CPU wheel. So a hint names the packages too, read from the installed package's own metadata
(pyproject.toml's `[project.optional-dependencies]`), not from a second list kept here.
"""

from __future__ import annotations

import re
import shlex
from importlib import metadata

__all__ = ["DISTRIBUTION", "extra_requirements", "install_hint"]

DISTRIBUTION = "fusion-pipeline"
_EXTRA_MARKER = re.compile(r"""\bextra\s*==\s*["']([^"']+)["']""")


def extra_requirements(extra: str) -> list[str]:
    """The requirements of `extra` as pip takes them (``rosbags>=0.10``); [] when the package's
    metadata cannot be read (run from a source tree that was never installed)."""
    try:
        requires = metadata.requires(DISTRIBUTION) or []
    except metadata.PackageNotFoundError:
        return []
    out = []
    for line in requires:
        requirement, _, marker = line.partition(";")
        found = _EXTRA_MARKER.search(marker)
        if found is not None and found.group(1) == extra:
            out.append(requirement.strip())
    return out


def install_hint(extra: str) -> str:
    """How to install `extra`: ``pip install 'fusion-pipeline[EXTRA]'``, and its packages by name."""
    hint = f"pip install '{DISTRIBUTION}[{extra}]'"
    if packages := extra_requirements(extra):
        named = " ".join(shlex.quote(p) for p in packages)
        if any(p.startswith("torch") for p in packages):  # PyPI's torch for Linux is the CUDA build
            named += " (torch from --index-url https://download.pytorch.org/whl/cpu)"
        hint += f' (a CPU-only install adds its packages by name instead, as README "Install" shows: {named})'
    return hint
