"""`model info` on an exported model works where torch cannot be imported (a runtime-only install)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_model import export_tiny

from fusion_pipeline.model.fusion import FUSIONS
from fusion_pipeline.model.net import FusionNet


@pytest.fixture(scope="module", params=FUSIONS)
def exported(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[FusionNet, Path]:
    return export_tiny(request.param, tmp_path_factory.mktemp("onnx"))


def test_info_works_without_torch(exported: tuple[FusionNet, Path]) -> None:
    _, path = exported
    # Make `import torch` fail in the child, as on a runtime-only install.
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from fusion_pipeline.cli import main\n"
        f"sys.exit(main(['model', 'info', {str(path)!r}, '--json']))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["fusion"] in FUSIONS
