"""GPU check of the default model: CUDA (optionally TensorRT) in use, outputs equal to the CPU's, latency.

    python tools/check_gpu.py [--tensorrt] [--runs 500] [--json out.json]

Builds fusion_pipeline.inference.ModelRuntime exactly as the inference node does, once with
``providers = ["cuda"]`` (or ``["tensorrt"]``) and once with ``["cpu"]``, on the demo config. It exits 1
when the GPU provider is not the one onnxruntime actually uses (``session.get_providers()``), checks
that the GPU outputs (IO binding, device-side output buffers) match the CPU's on the same inputs, then
times both side by side (alternating calls, batch 1, after warm-up) and prints a Markdown table with the
card's name, ready for docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from fusion_pipeline.config import load_config
from fusion_pipeline.inference import PROVIDERS, ModelRuntime


def _runtime(providers: list[str]) -> ModelRuntime:
    config = load_config()
    model = config.model.model_copy(update={"providers": providers})
    return ModelRuntime(config.model_copy(update={"model": model}))


def _card() -> str:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
        )
        return out.stdout.strip() or "unknown GPU"
    except (OSError, subprocess.TimeoutExpired):
        return "no nvidia-smi"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tensorrt", action="store_true", help="check TensorRT instead of CUDA")
    parser.add_argument("--runs", type=int, default=500, help="timed calls per provider (%(default)s)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    wanted = "tensorrt" if args.tensorrt else "cuda"
    gpu = _runtime([wanted])
    print(gpu.describe())
    if gpu.provider != PROVIDERS[wanted]:
        print(f"FAIL: {PROVIDERS[wanted]} is not in use; onnxruntime runs {gpu.session.get_providers()}")
        return 1
    cpu = _runtime(["cpu"])
    rng = np.random.default_rng(0)
    # Every sensor input's tensors (a radar's mask too), all present.
    arrays = {
        name: rng.standard_normal(shape).astype(np.float32)
        for spec in gpu.contract.inputs
        for name, shape in spec.tensors.items()
    }
    presence = [1] * len(gpu.contract.presence_order)
    ours, reference = gpu.infer(arrays, presence), cpu.infer(arrays, presence)
    worst = max(float(np.abs(ours[k] - reference[k]).max()) for k in reference)
    print(f"max |{wanted} - cpu| over all outputs: {worst:.2e}")
    if worst > 1e-2:
        print("FAIL: GPU outputs differ from the CPU's")
        return 1
    times: dict[str, list[float]] = {"gpu": [], "cpu": []}
    for _ in range(args.runs):  # alternate, so both see the same machine state
        for key, runtime in (("gpu", gpu), ("cpu", cpu)):
            start = time.perf_counter()
            runtime.infer(arrays, presence)
            times[key].append((time.perf_counter() - start) * 1e3)
    figures = {
        key: {q: round(float(np.percentile(v, p)), 3) for q, p in (("p50", 50), ("p99", 99))}
        for key, v in times.items()
    }
    card = _card()
    print(f"\nCard: {card}; {args.runs} calls each, batch 1, default model, random inputs, all present.\n")
    print("| provider | median (ms) | p99 (ms) |\n|---|---|---|")
    print(f"| {gpu.provider} | {figures['gpu']['p50']:.3f} | {figures['gpu']['p99']:.3f} |")
    print(f"| {cpu.provider} | {figures['cpu']['p50']:.3f} | {figures['cpu']['p99']:.3f} |")
    if args.json is not None:
        args.json.write_text(
            json.dumps({"card": card, "provider": gpu.provider, "max_diff": worst, **figures})
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
