"""Exported models evaluated as the pipeline runs them: ONNX Runtime on the unseen test seed, per presence
pattern, one file per training seed.

    python tools/eval_onnx.py data/s17/fallback/seed0.onnx data/s17/fallback/seed1.onnx \
        data/s17/fallback/seed2.onnx --baselines data/s17/placeholder --out data/s17/fallback

`model eval` measures the torch checkpoints; this measures the artefact itself, so a model composed at
export (`model export --fallback`) or a model of your own is measured the same way. Every file must carry
the same contract but for its `fusion` label. The rows (mean and range over the files, as `model eval
--seeds` gives them) are printed, and with --out written as OUT/eval.json beside the `-only` rows of
BASELINES/eval.json, so that `tools/model_compare.py NAME=OUT` reads them like any run dir. OUT/eval.json
is never overwritten.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnxruntime as ort

from fusion_pipeline.files import write_new_text
from fusion_pipeline.inference import load_contract
from fusion_pipeline.model.evaluate import aggregate_rows, metrics_of, patterns_for
from fusion_pipeline.model.train import LABEL_NAMES, input_tensors, load_dataset


def evaluate(path: Path, data: dict[str, np.ndarray], name: str) -> list[dict]:
    """One row per presence pattern of `path`'s contract, its outputs from ONNX Runtime (CPU, batches of
    256)."""
    contract = load_contract(path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outputs = [o.name for o in session.get_outputs()]
    labels = {k: data[k].reshape(len(data["class"]), -1) for k in LABEL_NAMES}
    labels["class"] = labels["class"].reshape(-1).astype(np.int64)
    n = len(labels["class"])
    rows = []
    for pattern, bits in patterns_for(contract).items():
        got: dict[str, list[np.ndarray]] = {k: [] for k in outputs}
        for i in range(0, n, 256):
            feeds = {k: data[k][i : i + 256].astype(np.float32) for k in input_tensors(contract)}
            batch = len(feeds[contract.presence_order[0]])
            feeds[contract.presence] = np.tile(np.array(bits, np.float32), (batch, 1))
            for k, v in zip(outputs, session.run(outputs, feeds), strict=True):
                got[k].append(v)
        metrics = metrics_of(
            {k: np.concatenate(v) for k, v in got.items()}, labels, contract.outputs[0].shape[0]
        )
        rows.append({"model": name, "pattern": pattern, **metrics.__dict__})
        print(f"{path.name:24} {pattern:12} acc {metrics.accuracy:.3f}")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=Path, metavar="MODEL.onnx", help="one per training seed")
    parser.add_argument("--name", default="attention", help="the rows' model name (%(default)s)")
    parser.add_argument("--test-seed", type=int, default=1000, help="world seed (%(default)s)")
    parser.add_argument("--test-samples", type=int, default=2000, help="samples (%(default)s)")
    parser.add_argument("--cache-dir", type=Path, default=None, help="dataset cache (model eval's default)")
    parser.add_argument("--baselines", type=Path, default=None, help="run dir whose -only rows to add")
    parser.add_argument("--out", type=Path, default=None, help="write OUT/eval.json (needs --baselines)")
    args = parser.parse_args()
    if len(set(args.models)) != len(args.models):
        parser.error("a model file is given twice")
    if args.out is not None and args.baselines is None:
        parser.error("--out needs --baselines: the -only rows the checks compare against")
    contracts = {path: replace(load_contract(path), fusion="") for path in args.models}
    if len(set(map(str, contracts.values()))) != 1:
        parser.error("the models carry different contracts; evaluate them apart")
    contract = next(iter(contracts.values()))
    data = load_dataset(args.test_seed, args.test_samples, args.cache_dir, contract)
    rows = aggregate_rows([evaluate(path, data, args.name) for path in args.models])
    for row in rows:
        low, high = row["range"]["accuracy"]
        print(f"{row['model']:12} {row['pattern']:12} acc {row['accuracy']:.3f} ({low:.3f}-{high:.3f})")
    if args.out is None:
        return
    base = json.loads((args.baselines / "eval.json").read_text())
    measured = (base["setup"]["test_world_seed"], base["setup"]["test_samples"])
    if measured != (args.test_seed, args.test_samples):
        raise SystemExit(
            f"{args.baselines}/eval.json: its baselines were measured on world seed {measured[0]}, "
            f"{measured[1]} samples; this run used {args.test_seed}, {args.test_samples}"
        )
    report = {
        "setup": {
            **base["setup"],
            "models": [str(p) for p in args.models],
            "fusion": load_contract(args.models[0]).fusion,
        },
        "rows": rows + [r for r in base["rows"] if r["model"].endswith("-only")],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    write_new_text(args.out / "eval.json", json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
