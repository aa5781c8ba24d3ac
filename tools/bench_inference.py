"""Latency of the default fused model: ONNX Runtime (CPU) against torch eager, side by side.

    python tools/bench_inference.py [--model fusion_pipeline/models/default.onnx] [--run-dir DIR]
        [--against OTHER.onnx] [--write]

Both engines run the same network: ORT runs the shipped ONNX file; torch runs the checkpoints it was
exported from when `RUN_DIR/<fusion>.npz` exists (and, for a model with the single-sensor fallback, the
`<modality>-only.npz` beside it), else identically shaped networks (latency does not depend on the
weights' values). --against adds a second table: the model against another ONNX file (the fused network
exported with `--no-fallback`, say), both in ORT with no torch run between them to cool the caches. Runs
alternate between the engines so that load from other processes on this shared machine hits them alike.
With --write, the tables replace the "## Inference" section of docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from benchdoc import BENCHMARKS, machine, replace_section

from fusion_pipeline.contract import MODALITIES, ModelContract
from fusion_pipeline.inference import load_contract
from fusion_pipeline.model.evaluate import patterns_for
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


def _first_modality(contract: ModelContract) -> str:
    return contract.input(contract.presence_order[0]).modality


@dataclass
class Inputs:
    """One case's inputs, for ORT (numpy by name) and for torch (positional, the contract's order)."""

    feeds: dict[str, np.ndarray]
    args: tuple[torch.Tensor, ...]


def case_inputs(contract: ModelContract, batch: int, alone: bool) -> Inputs:
    # All present, or the first sensor input's modality alone: a fallback's other branch.
    pattern = f"{_first_modality(contract)} only" if alone else "all"
    presence = torch.tensor(patterns_for(contract)[pattern]).repeat(batch, 1)
    inputs = random_inputs(contract, presence, seed=batch)
    return Inputs({k: v.numpy() for k, v in inputs.items()}, tuple(inputs[n] for n in contract.tensors))


def bench(
    contract: ModelContract, runners: dict[str, Callable[[Inputs], object]], iters: int
) -> tuple[list[str], list[str]]:
    """The table's header and one row per CASES entry: each runner's median, p99 and IQR, then the first
    runner's median over each other's. Runs alternate between the runners, the order rotating."""
    names = list(runners)
    rows = []
    for batch, alone in CASES:
        inputs = case_inputs(contract, batch, alone)
        times: dict[str, list[float]] = {name: [] for name in names}
        with torch.inference_mode():
            for i in range(iters + 20):  # the first 20 rounds are warm-up
                for name in names[i % len(names) :] + names[: i % len(names)]:
                    t0 = time.perf_counter()
                    runners[name](inputs)
                    if i >= 20:
                        times[name].append(time.perf_counter() - t0)
        stats = {name: _stats(t) for name, t in times.items()}
        cells = [f"{v:.2f}" for name in names for v in stats[name]]
        cells += [f"{stats[names[0]][0] / stats[name][0]:.2f}" for name in names[1:]]
        sensors = f"{_first_modality(contract)} alone" if alone else "all"
        rows.append(f"| {batch} | {sensors} | " + " | ".join(cells) + " |")
    head = [f"{name} {stat}" for name in names for stat in STATS]
    head += [f"{names[0]}/{name} (median)" for name in names[1:]]
    return ["| batch | sensors | " + " | ".join(head) + " |", "|---|---|" + "---|" * len(head)], rows


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

    contract = load_contract(args.model)
    model, torch_source = torch_model(contract, args.run_dir)
    torch.set_num_threads(args.threads)
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1

    def ort_runner(path: Path) -> Callable[[Inputs], object]:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return lambda inputs: session.run(None, inputs.feeds)

    ours = ort_runner(args.model)
    tables = [
        (
            "against torch eager on the same network",
            bench(contract, {"ORT": ours, "torch": lambda inputs: model(*inputs.args)}, args.iters),
        )
    ]
    if args.against is not None:
        tables.append(
            (
                f"against `{_shown(args.against)}` in ONNX Runtime (no torch runs between)",
                bench(contract, {"ORT": ours, "against": ort_runner(args.against)}, args.iters),
            )
        )
    command = " ".join(["python tools/bench_inference.py", *(sys.argv[1:] if argv is None else argv)])
    size_mb = args.model.stat().st_size / 1e6
    lines = [
        SECTION,
        "",
        "Fused model latency per call (ms), ONNX Runtime CPU side by side with other engines (runs "
        "alternate between them).",
        "",
        "```",
        command,
        "```",
        "",
        f"Model: `{_shown(args.model)}` "
        f"({contract.fusion}, {size_mb:.2f} MB); torch: {torch_source}. "
        f"Machine: {machine()} (shared with other work), "
        f"onnxruntime {ort.__version__}, torch {torch.__version__}, both with {args.threads} intra-op "
        f"thread(s); {args.iters} timed runs per cell after 20 warm-up rounds. Inputs are random; all "
        "sensors present, or one modality alone (a fallback model's other branch).",
    ]
    for title, (head, rows) in tables:
        lines += ["", f"ONNX Runtime {title}:", "", *head, *rows]
    text = "\n".join([*lines, ""])
    print(text)
    if args.write:
        replace_section(BENCHMARKS, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
