"""The bring-your-own-model walkthrough (docs/MODEL.md): the page shows examples/byo_model.py and
examples/byo.toml as they are, and the example's contract binds the example's config. The walkthrough
itself runs in tests/process/test_byo_model.py."""

from __future__ import annotations

import re
import sys

from paths import ROOT

from fusion_pipeline.binding import bind
from fusion_pipeline.config import load_config

# The example is a script run as `python examples/byo_model.py`, not a package.
sys.path.insert(0, str(ROOT / "examples"))

import byo_model  # noqa: E402

MODEL_DOC = ROOT / "docs" / "MODEL.md"
# A file the page shows: the marker, then a fenced block holding the file's text.
SHOWN = re.compile(r"<!-- example: (\S+) -->\n```\w*\n(.*?)```\n", re.S)


def test_the_page_shows_each_example_file_as_it_is() -> None:
    shown = dict(SHOWN.findall(MODEL_DOC.read_text()))
    assert set(shown) == {"examples/byo_model.py", "examples/byo.toml"}
    for path, text in shown.items():
        assert text == (ROOT / path).read_text(), f"docs/MODEL.md shows an old {path}: copy it in again"


def test_the_example_contract_binds_the_example_config_one_stream_per_input() -> None:
    bindings = bind(load_config(ROOT / "examples" / "byo.toml"), byo_model.CONTRACT)
    fed = {stream: (b.input.name, b.bit, b.input.shape) for stream, b in bindings.by_stream.items()}
    assert fed == {
        "camera/front": ("front", 0, (3, 224, 224)),
        "camera/rear": ("rear", 1, (3, 224, 224)),
        "lidar/top": ("bev", 2, (2, 64, 64)),
    }
