"""Latency of the default fused model: ONNX Runtime (CPU) against torch eager, side by side.

    python tools/bench_inference.py [--model fusion_pipeline/models/default.onnx] [--run-dir DIR]
        [--against OTHER.onnx] [--write]

Both engines run the same network: ORT runs the shipped ONNX file; torch runs the checkpoints it was
exported from when `RUN_DIR/<fusion>.npz` exists (and, for a model with the single-sensor fallback, the
`<modality>-only.npz` beside it), else identically shaped networks (latency does not depend on the
weights' values). --against adds a second ONNX file run by ORT in the same rounds (the fused network
exported with `--no-fallback`, say). Runs alternate between the engines so that load from other processes
on this shared machine hits them alike. With --write, the table replaces the "## Inference" section of
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

from fusion_pipeline.contract import MODALITIES, ModelContract
from fusion_pipeline.inference import load_contract
from fusion_pipeline.model.export import random_inputs
from fusion_pipeline.model.fallback import SingleSensorFallback
from fusion_pipeline.model.net import FusionNet
from fusion_pipeline.model.train import load_checkpoint, model_config_for

ROOT = Path(__file__).resolve().parent.parent
SECTION = "## Inference"
STATS = ("median", "p99", "IQR")
#: (batch, one modality alone) per row of the table.
CASES = ((1, False), (8, False), (1, True))


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


def torch_model(contract: ModelContract, run_dir: Path) -> tuple[torch.nn.Module, str]:
    """The torch network `contract` was exported from, and where its weights came from."""
    fusion, _, fallback = contract.fusion.partition(" + ")
    names = [fusion, *(f"{m}-only" for m in MODALITIES if fallback and contract.inputs_for(m))]
    paths = [run_dir / f"{name}.npz" for name in names]
    if all(p.is_file() for p in paths):
        nets = [load_checkpoint(p)[0] for p in paths]
        source = "checkpoints " + ", ".join(str(_shown(p)) for p in paths)
    else:
        nets = [FusionNet(model_config_for(name), contract).eval() for name in names]
        source = "same architecture, fresh weights (no checkpoint found)"
    if not fallback:
        return nets[0], source
    return SingleSensorFallback(nets[0], {n.config.modalities[0]: n for n in nets[1:]}).eval(), source


def bench(
    model_path: Path,
    run_dir: Path,
    against: Path | None,
    cases: tuple[tuple[int, bool], ...],
    iters: int,
    threads: int,
) -> tuple[list[str], str]:
    contract = load_contract(model_path)
    model, torch_source = torch_model(contract, run_dir)
    torch.set_num_threads(threads)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    sessions = {
        engine: ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        for engine, path in (("ort", model_path), ("against", against))
        if path is not None
    }
    engines = [*sessions, "torch"]
    rows = []
    for batch, alone in cases:
        presence = torch.ones(batch, len(contract.presence_order))
        if alone:  # the first sensor input's modality alone: a fallback's other branch
            first = contract.input(contract.presence_order[0]).modality
            presence[:] = torch.tensor(
                [float(contract.input(n).modality == first) for n in contract.presence_order]
            )
        inputs = random_inputs(contract, presence, seed=batch)
        feeds = {k: v.numpy() for k, v in inputs.items()}
        args = tuple(inputs[name] for name in contract.tensors)  # the contract's positional order
        times: dict[str, list[float]] = {engine: [] for engine in engines}
        with torch.inference_mode():
            for i in range(iters + 20):  # the first 20 rounds are warm-up
                for engine in engines[i % len(engines) :] + engines[: i % len(engines)]:
                    t0 = time.perf_counter()
                    if engine == "torch":
                        model(*args)
                    else:
                        sessions[engine].run(None, feeds)
                    if i >= 20:
                        times[engine].append(time.perf_counter() - t0)
        stats = {engine: _stats(t) for engine, t in times.items()}
        cells = [f"{v:.2f}" for engine in engines for v in stats[engine]]
        ratios = [stats["ort"][0] / stats[engine][0] for engine in engines if engine != "ort"]
        sensors = f"{contract.input(contract.presence_order[0]).modality} alone" if alone else "all"
        rows.append(f"| {batch} | {sensors} | " + " | ".join(cells + [f"{r:.2f}" for r in ratios]) + " |")
    return rows, torch_source


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "fusion_pipeline/models/default.onnx")
    parser.add_argument("--run-dir", type=Path, default=ROOT / "data/model-run")
    parser.add_argument("--against", type=Path, default=None, help="a second ONNX file, run by ORT too")
    parser.add_argument("--iters", type=int, default=300, help="timed runs per engine and batch size")
    parser.add_argument(
        "--threads", type=int, default=1, help="intra-op threads for both engines (%(default)s)"
    )
    parser.add_argument("--write", action="store_true", help="update docs/BENCHMARKS.md")
    args = parser.parse_args(argv)

    rows, torch_source = bench(args.model, args.run_dir, args.against, CASES, args.iters, args.threads)
    contract = load_contract(args.model)
    size_mb = args.model.stat().st_size / 1e6
    against = [] if args.against is None else [f"`{_shown(args.against)}` (ORT)"]
    head = [f"{e} {stat}" for e in ("ORT", *(["against"] if against else []), "torch") for stat in STATS]
    ratios = [f"ORT/{e} (median)" for e in (*(["against"] if against else []), "torch")]
    command = " ".join(["python tools/bench_inference.py", *(sys.argv[1:] if argv is None else argv)])
    lines = [
        SECTION,
        "",
        "Fused model latency per call (ms), ONNX Runtime CPU against torch eager on the same network"
        + (f" and against {against[0]}" if against else "")
        + ", measured side by side (runs alternate between engines).",
        "",
        "```",
        command,
        "```",
        "",
        f"Model: `{_shown(args.model)}` "
        f"({contract.fusion}, {size_mb:.2f} MB); torch: {torch_source}. "
        f"Machine: {machine()} (shared with other work), "
        f"onnxruntime {ort.__version__}, torch {torch.__version__}, both with {args.threads} intra-op "
        f"thread(s); "
        f"{args.iters} timed runs per cell after 20 warm-up rounds. Inputs are random; all sensors "
        "present, or one modality alone (a fallback model's other branch).",
        "",
        "| batch | sensors | " + " | ".join(head + ratios) + " |",
        "|---|---|" + "---|" * (len(head) + len(ratios)),
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
