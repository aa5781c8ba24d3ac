"""tools/eval_onnx.py measures the exported file itself: a fallback model with one modality left scores
exactly what that modality's own exported model scores, and as the fused network elsewhere."""

from __future__ import annotations

import sys
from pathlib import Path

from paths import ROOT
from tiny_model import random_data, tiny_suite

from fusion_pipeline.contract import MODALITIES, default_contract
from fusion_pipeline.model.export import export_onnx
from fusion_pipeline.model.fallback import SingleSensorFallback

# The tools are scripts run as `python tools/NAME.py` (their folder on sys.path), not a package.
sys.path.insert(0, str(ROOT / "tools"))

import eval_onnx  # noqa: E402


def test_the_files_own_outputs_are_scored_per_presence_pattern(tmp_path: Path) -> None:
    nets = tiny_suite()
    fused = nets["attention"]
    baselines = {m: nets[f"{m}-only"] for m in MODALITIES}
    paths = {"fallback": tmp_path / "fallback.onnx", "fused": tmp_path / "fused.onnx"}
    export_onnx(SingleSensorFallback(fused, baselines), paths["fallback"])
    export_onnx(fused, paths["fused"])
    for modality, net in baselines.items():
        paths[modality] = tmp_path / f"{modality}.onnx"
        export_onnx(net, paths[modality])
    data = {k: v.numpy() for k, v in random_data(default_contract(), 300).items()}
    rows = {name: {r["pattern"]: r for r in eval_onnx.evaluate(p, data, name)} for name, p in paths.items()}

    for modality in MODALITIES:
        alone = rows["fallback"][f"{modality} only"]
        assert alone["accuracy"] == rows[modality]["all"]["accuracy"]
        assert abs(alone["position_mae_m"] - rows[modality]["all"]["position_mae_m"]) < 1e-5
    for pattern in ("all", *(f"no {m}" for m in MODALITIES)):
        assert rows["fallback"][pattern]["accuracy"] == rows["fused"][pattern]["accuracy"]
    # Not a tautology: the fused network alone scores otherwise with the camera left.
    assert rows["fused"]["camera only"]["macro_f1"] != rows["fallback"]["camera only"]["macro_f1"]
