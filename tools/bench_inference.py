"""Latency of the default fused model: ONNX Runtime (CPU) against torch eager, side by side.

    python tools/bench_inference.py [--model fusion_pipeline/models/default.onnx] [--write]

Both engines run the same network: ORT runs the shipped ONNX file; torch runs the checkpoint it was
exported from when `data/model-run/<fusion>.npz` exists, else an identically shaped network (latency does
not depend on the weights' values). Runs alternate between the engines so that load from other processes
on this shared machine hits both alike. With --write, the table replaces the "## Inference" section of
docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from benchdoc import BENCHMARKS, machine, replace_section

from fusion_pipeline.inference import load_contract
from fusion_pipeline.model.export import random_inputs
from fusion_pipeline.model.net import FusionNet, ModelConfig
from fusion_pipeline.model.train import load_checkpoint

ROOT = Path(__file__).resolve().parent.parent
SECTION = "## Inference"


def _shown(path: Path) -> Path:
    path = path.resolve()
    return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path


def _stats(samples_s: list[float]) -> tuple[float, float, float]:
    ms = np.asarray(samples_s) * 1e3
    return (
        float(np.median(ms)),
        float(np.percentile(ms, 99)),
        float(np.percentile(ms, 75) - np.percentile(ms, 25)),
    )


def bench(
    model_path: Path, run_dir: Path, batches: tuple[int, ...], iters: int, threads: int
) -> tuple[list[str], str]:
    contract = load_contract(model_path)
    checkpoint = run_dir / f"{contract.fusion}.npz"
    if checkpoint.is_file():
        model, _ = load_checkpoint(checkpoint)
        torch_source = (
            f"checkpoint {checkpoint.relative_to(ROOT) if checkpoint.is_absolute() else checkpoint}"
        )
    else:
        model = FusionNet(ModelConfig(fusion=contract.fusion), contract).eval()
        torch_source = "same architecture, fresh weights (no checkpoint found)"
    torch.set_num_threads(threads)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    rows = []
    for batch in batches:
        inputs = random_inputs(contract, torch.ones(batch, len(contract.presence_order)), seed=batch)
        feeds = {k: v.numpy() for k, v in inputs.items()}
        args = tuple(inputs[name] for name in contract.tensors)  # FusionNet's positional order
        times: dict[str, list[float]] = {"ort": [], "torch": []}
        with torch.inference_mode():
            for i in range(iters + 20):  # the first 20 rounds are warm-up
                for engine in ("ort", "torch") if i % 2 else ("torch", "ort"):
                    t0 = time.perf_counter()
                    if engine == "ort":
                        session.run(None, feeds)
                    else:
                        model(*args)
                    if i >= 20:
                        times[engine].append(time.perf_counter() - t0)
        o_med, o_p99, o_iqr = _stats(times["ort"])
        t_med, t_p99, t_iqr = _stats(times["torch"])
        rows.append(
            f"| {batch} | {o_med:.2f} | {o_p99:.2f} | {o_iqr:.2f} | {t_med:.2f} | {t_p99:.2f} | {t_iqr:.2f} "
            f"| {o_med / t_med:.2f} |"
        )
    return rows, torch_source


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "fusion_pipeline/models/default.onnx")
    parser.add_argument("--run-dir", type=Path, default=ROOT / "data/model-run")
    parser.add_argument("--iters", type=int, default=300, help="timed runs per engine and batch size")
    parser.add_argument(
        "--threads", type=int, default=1, help="intra-op threads for both engines (%(default)s)"
    )
    parser.add_argument("--write", action="store_true", help="update docs/BENCHMARKS.md")
    args = parser.parse_args(argv)

    rows, torch_source = bench(args.model, args.run_dir, (1, 8), args.iters, args.threads)
    contract = load_contract(args.model)
    size_mb = args.model.stat().st_size / 1e6
    lines = [
        SECTION,
        "",
        "Fused model latency per call (ms), ONNX Runtime CPU against torch eager on the same network, "
        "measured side by side (runs alternate between engines).",
        "",
        "```",
        "python tools/bench_inference.py --write",
        "```",
        "",
        f"Model: `{_shown(args.model)}` "
        f"({contract.fusion} fusion, {size_mb:.2f} MB); torch: {torch_source}. "
        f"Machine: {machine()} (shared with other work), "
        f"onnxruntime {ort.__version__}, torch {torch.__version__}, both with {args.threads} intra-op "
        f"thread(s); "
        f"{args.iters} timed runs per cell after 20 warm-up rounds. Inputs are random; all sensors present.",
        "",
        "| batch | ORT median | ORT p99 | ORT IQR | torch median | torch p99 | torch IQR "
        "| ORT/torch (median) |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if args.write:
        replace_section(BENCHMARKS, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
