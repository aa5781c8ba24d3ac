"""Commands run as on an install without an extra: its package cannot be imported."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def without(module: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """`fusion-pipeline ARGS` in a process where `import MODULE` fails, as on a runtime-only install."""
    code = (
        f"import sys; sys.modules[{module!r}] = None\n"
        "from fusion_pipeline.cli import main\n"
        f"sys.exit(main({list(args)!r}))\n"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=cwd)
