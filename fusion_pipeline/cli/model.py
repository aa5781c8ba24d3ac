"""`fusion-pipeline model train|eval|export|info`.

torch is imported inside the handlers only: `model info` (and `--help`) must work where the runtime is
installed without the [train] extra, and train, eval and export say to install it where it is missing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

from fusion_pipeline.cli.args import add_command, check_output_path, comma_list, number
from fusion_pipeline.model.errors import ModelError

__all__ = ["MIN_SAMPLES", "register"]

DEFAULT_RUN = Path("data/model-run")
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "models" / "default.onnx"
DEFAULT_TEST_SEED = 1000
CACHE_HELP = "dataset cache (default: $FUSION_PIPELINE_CACHE, else ~/.cache/fusion-pipeline)"
#: The fewest samples that leave one training batch (TrainConfig.batch_size 64) after the validation
#: tail (val_fraction 10 %); stated here because `--help` must work without torch (tested against
#: TrainConfig in tests/unit/cli/test_model.py).
MIN_SAMPLES = 71
#: The top-level modules of the [train] extra (pyproject.toml).
TRAIN_EXTRA = ("torch", "onnx", "onnxscript", "matplotlib")


@contextlib.contextmanager
def _train_extra() -> Iterator[None]:
    """Imports of the [train] extra: a missing one is a ModelError that says what to install."""
    try:
        yield
    except ModuleNotFoundError as exc:
        if exc.name not in TRAIN_EXTRA:
            raise
        raise ModelError(
            f"needs {exc.name}, which is not installed: pip install 'fusion-pipeline[train]'"
        ) from None


def register(sub: argparse._SubParsersAction) -> None:
    model = sub.add_parser("model", help="train, evaluate, export and inspect the fused model")
    cmds = model.add_subparsers(dest="model_command", metavar="MODEL_COMMAND", required=True)

    p = add_command(cmds, "train", _train)
    _run_dir_argument(p, "where checkpoints go (%(default)s)")
    p.add_argument("--cache-dir", type=Path, default=None, help=CACHE_HELP)
    p.add_argument(
        "--models",
        type=comma_list,
        action="extend",  # `--models a --models b` trains both, as `--models a,b` does
        default=None,
        help="comma-separated models (attention, concat, joint, camera-only, ...) or 'all'; repeat it to "
        "add more (default: all)",
    )
    p.add_argument(
        "--samples",
        type=number(MIN_SAMPLES, int),
        default=None,
        help=f"training samples, at least {MIN_SAMPLES} (one batch after the validation tail; "
        "default: the documented run, docs/MODEL.md)",
    )
    p.add_argument("--epochs", type=number(1, int), default=None, help="epochs (default: the documented run)")
    p.add_argument(
        "--world-seed",
        type=int,
        default=None,
        help="world seed of the training set (default: the documented run)",
    )
    p.add_argument("--seed", type=int, default=None, help="torch seed: init, shuffling, modality dropout")

    p = add_command(cmds, "eval", _eval)
    _run_dir_argument(p, "checkpoints (%(default)s)")
    p.add_argument("--cache-dir", type=Path, default=None, help=CACHE_HELP)
    p.add_argument("--test-seed", type=int, default=DEFAULT_TEST_SEED, help="world seed (%(default)s)")
    p.add_argument(
        "--test-samples", type=number(1, int), default=2000, help="evaluation samples (%(default)s)"
    )
    p.add_argument("--doc", type=Path, default=None, help="report file (default: RUN_DIR/MODEL.md)")
    p.add_argument(
        "--plot",
        type=Path,
        default=None,
        help="plot, linked from the report (default: model_eval.png beside --doc, else in RUN_DIR)",
    )

    p = add_command(cmds, "export", _export)
    _run_dir_argument(p, "checkpoints (%(default)s)")
    p.add_argument("--model", default="best", help="suite member, or 'best' from eval.json (%(default)s)")
    p.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help="ONNX file to create, never overwritten (default: the packaged default model; remove it first "
        "to replace it)",
    )

    p = add_command(cmds, "info", _info)
    p.add_argument("model_path", type=Path, metavar="MODEL.onnx")
    p.add_argument("--json", action="store_true", help="print the raw contract JSON")


def _run_dir_argument(parser: argparse.ArgumentParser, help: str) -> None:
    """--run-dir: the suite's folder, where train writes the checkpoints, eval reads them and writes
    eval.json, and export reads both."""
    parser.add_argument("--run-dir", type=Path, default=DEFAULT_RUN, help=help)


def _train(args: argparse.Namespace) -> int:
    """train the fusion strategies and single-sensor baselines on world data

    Generate (or load the cached) world dataset, then train every model of the suite on it: the three
    fusion strategies and one single-sensor baseline per modality.
    """
    with _train_extra():
        from fusion_pipeline.model.train import (
            SUITE,
            TrainConfig,
            load_dataset,
            model_config_for,
            save_checkpoint,
            to_tensors,
            train_model,
        )

    overrides = {
        "n_samples": args.samples,
        "epochs": args.epochs,
        "world_seed": args.world_seed,
        "seed": args.seed,
    }
    tc = TrainConfig(**{k: v for k, v in overrides.items() if v is not None})
    names = list(SUITE) if args.models is None or "all" in args.models else args.models
    configs = {name: model_config_for(name) for name in names}  # validates every name before any work
    data = to_tensors(load_dataset(tc.world_seed, tc.n_samples, args.cache_dir))
    args.run_dir.mkdir(parents=True, exist_ok=True)
    for name, config in configs.items():
        t0 = time.perf_counter()
        model, history = train_model(config, tc, data, desc=name)
        meta = {"train_config": asdict(tc), "history": history, "seconds": time.perf_counter() - t0}
        save_checkpoint(args.run_dir / f"{name}.npz", model, meta)
        last = history[-1]
        print(
            f"{name}: loss {last['loss']:.3f}, "
            f"val accuracy {last['val_accuracy']:.3f}, {meta['seconds']:.0f} s"
        )
    return 0


def _eval(args: argparse.Namespace) -> int:
    """evaluate the trained suite on an unseen world seed; write the report into the run dir

    Evaluate every trained model under each presence pattern on a world seed the training never saw,
    and write the table and plot into a report (its marked section; `--doc docs/MODEL.md` updates the
    model documentation and docs/model_eval.png).
    """
    with _train_extra():
        from fusion_pipeline.model.evaluate import evaluate_suite, pyplot, save_rows, write_report
        from fusion_pipeline.model.train import SUITE, load_checkpoint, load_dataset, to_tensors

        pyplot()  # only the plot needs matplotlib, at the very end: check it before the evaluation

    models, train_configs = {}, []
    for name in SUITE:
        path = args.run_dir / f"{name}.npz"
        if path.is_file():
            models[name], meta = load_checkpoint(path)
            train_configs.append(meta["train_config"])
    if not models:
        raise ModelError(f"{args.run_dir}: no checkpoints; run `fusion-pipeline model train` first")
    tc = train_configs[0]
    if any(c != tc for c in train_configs):
        raise ModelError(
            f"{args.run_dir}: checkpoints were trained with different settings; retrain the suite"
        )
    if args.test_seed == tc["world_seed"]:
        raise ModelError(f"--test-seed {args.test_seed} is the training world seed; pick an unseen one")
    data = to_tensors(load_dataset(args.test_seed, args.test_samples, args.cache_dir))
    rows = evaluate_suite(models, data)
    setup = {
        "train_world_seed": tc["world_seed"],
        "train_samples": tc["n_samples"],
        "val_fraction": tc["val_fraction"],
        "seed": tc["seed"],
        "epochs": tc["epochs"],
        "test_world_seed": args.test_seed,
        "test_samples": args.test_samples,
    }
    doc = args.doc or args.run_dir / "MODEL.md"
    # Beside the doc by default: the doc links the plot relative to its own folder.
    plot = args.plot or doc.parent / "model_eval.png"
    doc.parent.mkdir(parents=True, exist_ok=True)
    plot.parent.mkdir(parents=True, exist_ok=True)
    summary = write_report(rows, setup, doc, plot)
    save_rows(args.run_dir / "eval.json", rows, summary, setup)
    for strategy, c in summary["acceptance"].items():
        print(
            f"{strategy:9s} all {c['all_present_accuracy']:.3f}  "
            f"best single {c['best_single_accuracy']:.3f}  "
            f"gain {c['fusion_gain']:+.3f}  worst missing drop {c['worst_missing_drop']:.3f}  "
            f"{'PASS' if c['passes'] else 'FAIL'}"
        )
    print(f"best: {summary['best']}; wrote {doc} and {plot}")
    return 0


def _export(args: argparse.Namespace) -> int:
    """export a trained model to ONNX with the contract in its metadata

    Export one trained model to ONNX (dynamic batch) with the model contract as metadata, then check
    ONNX Runtime against torch on random inputs under all presence masks.
    """
    check_output_path(args.out, "--out", new=True)
    with _train_extra():
        from fusion_pipeline.model.export import check_parity, export_onnx
        from fusion_pipeline.model.train import load_checkpoint

    name = args.model
    if name == "best":
        eval_path = args.run_dir / "eval.json"
        if not eval_path.is_file():
            raise ModelError(f"{eval_path}: missing; run `fusion-pipeline model eval` or pass --model")
        name = json.loads(eval_path.read_text())["best"]
    model, _ = load_checkpoint(args.run_dir / f"{name}.npz")
    # Written beside --out and linked into place only once it passed the parity check: a failed or
    # interrupted export leaves no half model, and link(2) refuses a file that appeared meanwhile.
    partial = args.out.with_name(f".{os.getpid()}.{args.out.name}")  # same suffix, same file system
    try:
        export_onnx(model, partial)
        worst = check_parity(model, partial)
        try:
            os.link(partial, args.out)
        except FileExistsError:
            raise ModelError(f"--out {args.out}: exists already, not overwriting it") from None
    finally:
        partial.unlink(missing_ok=True)
    size_mb = args.out.stat().st_size / 1e6
    print(f"exported {name} to {args.out} ({size_mb:.2f} MB); max |torch - onnxruntime| = {worst:.2e}")
    return 0


def _info(args: argparse.Namespace) -> int:
    """print the contract an ONNX model carries (needs no torch)

    Print the model contract stored in an ONNX model's metadata.
    """
    from fusion_pipeline.inference import load_contract

    contract = load_contract(args.model_path)
    if args.json:
        print(contract.to_json())
        return 0
    print(f"{args.model_path}: contract v{contract.version}, fusion {contract.fusion or '?'}")
    print(f"  presence input {contract.presence_input!r}, order {', '.join(contract.modalities)}")
    print(f"  classes: {', '.join(contract.classes)}")
    for title, specs in (("inputs", contract.inputs), ("outputs", contract.outputs)):
        print(f"  {title}:")
        for s in specs:
            shape = "x".join(str(d) for d in ("B", *s.shape))
            where = f" [{s.modality}]" if s.modality else ""
            print(f"    {s.name:13s} {s.dtype} {shape:12s}{where} {s.meaning}")
            if s.preprocess:
                print(f"      preprocess: {json.dumps(s.preprocess, sort_keys=True)}")
    return 0
