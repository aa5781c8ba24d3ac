"""`fusion-pipeline model train|eval|export|info`.

torch is imported inside the handlers only: `model info` (and `--help`) must work where the runtime is
installed without the [train] extra, and train, eval and export say to install it where it is missing.

Without --config, `train` trains the default contract's suite (the shipped model's four inputs); with one,
a suite for that config's sensors (`contract_for_config`), and each checkpoint keeps the config's text, so
`eval` renders the same sensors and `export` needs nothing but the run dir.

`train --seeds 0,1,2` trains the suite once per torch seed, into RUN_DIR/seed0, seed1, ...; `eval` of such
a run dir evaluates every seed and reports each figure as the mean with its range. `eval --corruptions`
evaluates on degraded copies of the test seed instead (sim/corruptions.py) and writes new files.

Nothing is written over: `train` refuses a checkpoint already in the run dir (it may hold others: the
teachers of a distilled run), `eval` an existing plot or eval.json (the report's section is updated in
place), `export` an existing model; all before any work.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fusion_pipeline.cli.args import (
    BooleanOnce,
    add_command,
    check_output_path,
    comma_list,
    config_argument,
    number,
)
from fusion_pipeline.config import Config, load_config, parse_config, read_config_text
from fusion_pipeline.contract import ModelContract, default_contract
from fusion_pipeline.errors import ConfigError
from fusion_pipeline.extras import install_hint
from fusion_pipeline.model.contracts import contract_for_config
from fusion_pipeline.model.errors import ModelError

if TYPE_CHECKING:  # torch is imported by the handlers only
    import torch

    from fusion_pipeline.model.net import FusionNet, ModelConfig
    from fusion_pipeline.model.train import TrainConfig

__all__ = ["MIN_SAMPLES", "register"]

DEFAULT_RUN = Path("data/model-run")
log = logging.getLogger(__name__)

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "models" / "default.onnx"
#: How the eval report names the default model.
DEFAULT_SHIPPED = "fusion_pipeline/models/default.onnx"
DEFAULT_TEST_SEED = 1000
CACHE_HELP = "dataset cache (default: $FUSION_PIPELINE_CACHE, else ~/.cache/fusion-pipeline)"
#: The fewest samples that leave one training batch (TrainConfig.batch_size 64) after the validation
#: tail (val_fraction 10 %); stated here because `--help` must work without torch (tested against
#: TrainConfig in tests/unit/cli/test_model.py).
MIN_SAMPLES = 71
#: The top-level modules of the [train] extra (pyproject.toml).
TRAIN_EXTRA = ("torch", "onnx", "onnxscript", "matplotlib")
#: model.net's MISSING and AUDIO_ENCODERS, stated here for `--help` without torch (tested against them).
MISSING = ("placeholder", "impute")
AUDIO_ENCODERS = ("cnn", "gru")
#: The folder of one training seed's suite inside a run dir of `train --seeds`.
SEED_DIR = "seed{}"


@contextlib.contextmanager
def _train_extra() -> Iterator[None]:
    """Imports of the [train] extra: a missing one is a ModelError that says what to install."""
    try:
        yield
    except ModuleNotFoundError as exc:
        if exc.name not in TRAIN_EXTRA:
            raise
        raise ModelError(f"needs {exc.name}, which is not installed: {install_hint('train')}") from None


def register(sub: argparse._SubParsersAction) -> None:
    model = sub.add_parser("model", help="train, evaluate, export and inspect the fused model")
    cmds = model.add_subparsers(dest="model_command", metavar="MODEL_COMMAND", required=True)

    p = add_command(cmds, "train", _train)
    config_argument(
        p,
        "config whose streams to train for, one model input each (default: the shipped model's four inputs)",
    )
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
    p.add_argument(
        "--seeds",
        type=comma_list,
        action="extend",
        default=None,
        help="comma-separated torch seeds: the suite once per seed, into RUN_DIR/seedN (not with --seed)",
    )
    p.add_argument(
        "--missing",
        choices=MISSING,
        default=None,
        help="a missing sensor's input: the fusion's learned placeholder (default) or imputed from the "
        "present ones (docs/MODEL.md)",
    )
    p.add_argument("--audio-encoder", choices=AUDIO_ENCODERS, default=None, help="log-mel encoder (cnn)")
    p.add_argument(
        "--p-single",
        type=number(0.0, high=1.0),
        default=None,
        help="share of training samples that keep one modality only (default 0)",
    )
    p.add_argument(
        "--distill-weight",
        type=number(0.0),
        default=None,
        help="weight of the distillation from the single-modality models into the fused ones (default 0)",
    )
    p.add_argument(
        "--train-corruptions",
        type=comma_list,
        action="extend",
        default=None,
        help="comma-separated KIND:SEVERITY corruptions (camera_blur:2, ...) for --corruption-share of the "
        "training samples",
    )
    p.add_argument(
        "--corruption-share",
        type=number(0.0),
        default=None,
        help="share of training samples corrupted by one of --train-corruptions (default 0)",
    )

    p = add_command(cmds, "eval", _eval)
    config_argument(p, "config whose sensors to render (default: the one the checkpoints were trained for)")
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
        help="plot, linked from the report (default: model_eval.png beside --doc, else in RUN_DIR; "
        "model_corruptions.png with --corruptions)",
    )
    p.add_argument(
        "--corruptions",
        type=comma_list,
        action="extend",
        default=None,
        help="comma-separated corruption kinds (camera_blur, ...) or 'all': evaluate on degraded copies of "
        "the test seed instead, into new files (--doc default RUN_DIR/corruptions.md, its rows beside it "
        "as .json)",
    )
    p.add_argument(
        "--severities",
        type=comma_list,
        action="extend",
        default=None,
        help="comma-separated severities of --corruptions (default 1,2,3)",
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
    p.add_argument(
        "--fallback",
        action=BooleanOnce,
        default=None,
        help="a fused model hands the sets with one modality left to that modality's own model (RUN_DIR/"
        "<modality>-only.npz), docs/MODEL.md; default: on for a fused model",
    )

    p = add_command(cmds, "info", _info)
    p.add_argument("model_path", metavar="MODEL.onnx", help="a model file, or package:NAME for a shipped one")
    p.add_argument("--json", action="store_true", help="print the raw contract JSON")


def _run_dir_argument(parser: argparse.ArgumentParser, help: str) -> None:
    """--run-dir: the suite's folder, where train writes the checkpoints, eval reads them and writes
    eval.json, and export reads both."""
    parser.add_argument("--run-dir", type=Path, default=DEFAULT_RUN, help=help)


def _train(args: argparse.Namespace) -> int:
    """train the fusion strategies and single-sensor baselines on world data

    Generate (or load the cached) world dataset, then train every model of the suite on it: the three
    fusion strategies and one single-modality baseline per modality (using all of its sensors). With
    --config, for that config's sensors: one model input per stream. With --seeds, the suite once per seed.
    """
    with _train_extra():
        from fusion_pipeline.model.net import ModelConfig
        from fusion_pipeline.model.train import (
            TrainConfig,
            load_dataset,
            model_config_for,
            suite,
            to_tensors,
        )
    from fusion_pipeline.sim.dataset import sensors_for

    if args.seeds is not None and args.seed is not None:
        raise ModelError("--seed and --seeds: give one of them")
    seeds = _ints(args.seeds, "--seeds") if args.seeds is not None else None
    overrides = {
        "n_samples": args.samples,
        "epochs": args.epochs,
        "world_seed": args.world_seed,
        "seed": args.seed,
        "p_single": args.p_single,
        "distill_weight": args.distill_weight,
        "corruptions": tuple(args.train_corruptions) if args.train_corruptions is not None else None,
        "corruption_share": args.corruption_share,
    }
    tc = TrainConfig(**{k: v for k, v in overrides.items() if v is not None})
    mix = tc.corruption_mix("--train-corruptions/--corruption-share")  # refused before any work
    options = {"missing": args.missing, "audio_encoder": args.audio_encoder}
    base = ModelConfig(**{k: v for k, v in options.items() if v is not None})
    config = load_config(args.config) if args.config else None
    # Kept in every checkpoint, so that eval renders the same sensors.
    saved_config = None
    if args.config:
        saved_config = {"source": str(args.config), "text": read_config_text(args.config)}
    contract = contract_for_config(config) if config else default_contract()
    names = list(suite(contract)) if args.models is None or "all" in args.models else args.models
    configs = {name: model_config_for(name, base) for name in names}  # validates every name before any work
    for name in names:
        if name not in suite(contract):
            raise ModelError(f"model {name!r}: {args.config} has no {name.removesuffix('-only')} stream")
    _refuse_unused_options(args, configs, contract)
    # Distillation: the single-modality teachers first, so each fused model of a seed learns from its own.
    configs = dict(sorted(configs.items(), key=lambda item: len(item[1].modalities) > 1))
    labels = [Path(SEED_DIR.format(seed)) for seed in seeds] if seeds is not None else [Path(".")]
    if tc.distill_weight > 0 and any(len(c.modalities) > 1 for c in configs.values()):
        for modality in dict.fromkeys(spec.modality for spec in contract.inputs):
            teacher = f"{modality}-only"
            if teacher not in configs and not all(
                (args.run_dir / d / f"{teacher}.npz").is_file() for d in labels
            ):
                raise ModelError(
                    f"--distill-weight: the fused models need the teacher {teacher}; train it in the same "
                    f"run (--models all) or first into {args.run_dir}"
                )
    # A checkpoint is never written over: refused now, not after the dataset and the training. Other files
    # of the run dir are left alone: the teachers of a distilled run, the other seeds' folders.
    checkpoints = [args.run_dir / d / f"{name}.npz" for d in labels for name in configs]
    existing = [str(path) for path in checkpoints if path.exists()]
    if existing:
        raise ModelError(
            f"{', '.join(existing)}: exist already, not overwriting them; remove them, leave them out of "
            "--models or pick another --run-dir"
        )
    sensors = sensors_for(config) if config else None
    data = to_tensors(
        load_dataset(tc.world_seed, tc.n_samples, args.cache_dir, contract, sensors, mix), contract
    )
    saved: list[Path] = []
    try:
        for seed, label in zip(seeds if seeds is not None else [tc.seed], labels, strict=True):
            _train_suite(
                configs, replace(tc, seed=seed), data, contract, args.run_dir / label, saved_config, saved
            )
    except KeyboardInterrupt:
        # What a rerun needs: the kept checkpoints are refused as existing, so name them and the rest.
        kept = ", ".join(str(path) for path in saved) or "none"
        rest = [str(path) for path in checkpoints if path not in saved]
        print(
            f"model train: interrupted; complete checkpoints kept: {kept}; not trained: {', '.join(rest)} "
            "(a rerun refuses the kept ones: leave them out of --models, or use another --run-dir)",
            file=sys.stderr,
        )
        raise
    return 0


def _refuse_unused_options(
    args: argparse.Namespace, configs: dict[str, ModelConfig], contract: ModelContract
) -> None:
    """Refuse an option given (not None: its default is resolved later) that no model of this run reads:
    --missing, --p-single and --distill-weight change fused models only (baselines use the placeholder and
    ignore train.FUSED_ONLY), --audio-encoder models that read audio."""
    fused = any(len(c.modalities) > 1 for c in configs.values())
    audio = bool(contract.inputs_for("audio")) and any("audio" in c.modalities for c in configs.values())
    for option, value, used, readers in (
        ("--missing", args.missing, fused, "fused models"),
        ("--p-single", args.p_single, fused, "fused models"),
        ("--distill-weight", args.distill_weight, fused, "fused models"),
        ("--audio-encoder", args.audio_encoder, audio, "models that read audio"),
    ):
        if value is not None and not used:
            raise ModelError(
                f"{option}: only {readers} use it, and this run trains none ({', '.join(configs)}); "
                "leave it out"
            )


def _ints(texts: list[str], option: str) -> list[int]:
    try:
        return [int(text) for text in texts]
    except ValueError:
        raise ModelError(f"{option} {','.join(texts)}: expected integers") from None


def _train_suite(
    configs: dict[str, ModelConfig],
    tc: TrainConfig,
    data: dict[str, torch.Tensor],
    contract: ModelContract,
    run_dir: Path,
    saved_config: dict[str, str] | None,
    saved: list[Path],
) -> None:
    """Train `configs` (suite name -> ModelConfig, baselines first) with `tc` into `run_dir`, adding each
    checkpoint written to `saved`; with distillation, each fused model from this run's baselines (or those
    already in `run_dir`)."""
    from fusion_pipeline.model.train import load_checkpoint, save_checkpoint, train_model

    run_dir.mkdir(parents=True, exist_ok=True)
    teachers: dict[str, FusionNet] = {}
    for name, model_config in configs.items():
        fused = len(model_config.modalities) > 1
        distilled = fused and tc.distill_weight > 0
        if distilled:  # a teacher not trained in this run is in run_dir (_train checked)
            for modality in dict.fromkeys(s.modality for s in contract.inputs if s.modality not in teachers):
                teachers[modality], _ = load_checkpoint(run_dir / f"{modality}-only.npz")
        t0 = time.perf_counter()
        model, history = train_model(
            model_config, tc, data, desc=name, contract=contract, teachers=teachers if distilled else None
        )
        if not fused:
            teachers[model_config.modalities[0]] = model
        meta = {
            "train_config": asdict(tc),
            "history": history,
            "seconds": time.perf_counter() - t0,
            "config": saved_config,
        }
        save_checkpoint(run_dir / f"{name}.npz", model, meta)
        saved.append(run_dir / f"{name}.npz")
        last = history[-1]
        print(
            f"{saved[-1]}: loss {last['loss']:.3f}, "
            f"val accuracy {last['val_accuracy']:.3f}, {meta['seconds']:.0f} s"
        )


def _eval(args: argparse.Namespace) -> int:
    """evaluate the trained suite on an unseen world seed; write the report into the run dir

    Evaluate every trained model under each presence pattern on a world seed the training never saw,
    and write the table and plot into a report (its marked section; `--doc docs/MODEL.md` updates the
    model documentation, beside a new docs/model_eval.png). The plot and RUN_DIR/eval.json are new files,
    never written over: remove old ones first. A run dir of `train --seeds` is evaluated per seed and
    reported as mean (min-max). With --corruptions, every model with all sensors present on degraded
    copies of the test seed instead, into new files.
    """
    with _train_extra():
        from fusion_pipeline.model.evaluate import (
            aggregate_rows,
            criteria_for,
            evaluate_corruptions,
            evaluate_suite,
            pyplot,
            save_rows,
            write_corruption_report,
            write_report,
        )
        from fusion_pipeline.model.train import load_dataset, to_tensors

        pyplot()  # only the plot needs matplotlib, at the very end: check it before the evaluation
    from fusion_pipeline.sim.dataset import sensors_for

    corruptions = _corruptions(args)
    runs, metas = _load_runs(args.run_dir)
    tc = metas[0]["train_config"]
    if args.test_seed == tc["world_seed"]:
        raise ModelError(f"--test-seed {args.test_seed} is the training world seed; pick an unseen one")
    contract = _suite_contract(args.run_dir, [m.contract for models in runs for m in models.values()])
    saved = metas[0].get("config")
    source, config = _eval_config(args.config, saved)
    if config is not None and contract_for_config(config) != contract:
        raise ModelError(
            f"--config {source}: its streams are not the sensors the checkpoints in {args.run_dir} were "
            f"trained for ({', '.join(contract.presence_order)})"
        )
    if args.config is not None and saved is not None and config is not None:
        _same_mounts(source, config, saved, args.run_dir)
    # New files (the report's doc aside): refused now, not once the evaluation is done; after the
    # inputs, so that a mistake in them is said first (fixing it would not move these).
    outputs = _corruption_outputs(args) if corruptions is not None else _eval_outputs(args)
    sensors = sensors_for(config) if config else None

    def test_set(corruption: Any = None) -> dict[str, Any]:
        data = load_dataset(args.test_seed, args.test_samples, args.cache_dir, contract, sensors, corruption)
        return to_tensors(data, contract)

    seeds = sorted({m["train_config"]["seed"] for m in metas})
    setup = {
        "train_world_seed": tc["world_seed"],
        "train_samples": tc["n_samples"],
        "val_fraction": tc["val_fraction"],
        "seed": seeds if len(runs) > 1 else seeds[0],
        "epochs": tc["epochs"],
        "test_world_seed": args.test_seed,
        "test_samples": args.test_samples,
        "config": source,
        "sensors": _sensor_summary(contract),
        "options": _options(runs[0], tc),
    }
    if corruptions is not None:
        present = {spec.modality for spec in contract.inputs}
        absent = sorted({c.kind for c in corruptions if c.modality not in present})
        if absent and "all" not in args.corruptions:
            raise ModelError(f"--corruptions {', '.join(absent)}: the suite has no sensor of that modality")
        corrupted = (((c.kind, c.severity), test_set(c)) for c in corruptions if c.modality in present)
        per_run = evaluate_corruptions(runs, test_set(), corrupted)
        rows = aggregate_rows(per_run) if len(per_run) > 1 else per_run[0]
        doc, plot, saved = outputs
        mean_drops = write_corruption_report(rows, setup, doc, plot)
        save_rows(saved, rows, {"mean_accuracy_drop": mean_drops}, setup)
        for name, by_severity in mean_drops.items():
            drops = "  ".join(f"severity {s} {d:+.3f}" for s, d in by_severity.items())
            print(f"{name:12s} mean accuracy drop over the corruptions: {drops}")
        print(f"wrote {doc}, {plot} and {saved}")
        return 0
    data = test_set()
    per_run = [evaluate_suite(models, data) for models in runs]
    rows = aggregate_rows(per_run) if len(per_run) > 1 else per_run[0]
    doc, plot, saved = outputs
    summary = write_report(
        rows,
        setup,
        doc,
        plot,
        criteria=criteria_for(contract),
        section=f"model-eval:{config.pipeline.name}" if config else "model-eval",
        # The project ships the demo suite's best; a config's run names its best, which it has not shipped.
        shipped_as=None if config else DEFAULT_SHIPPED,
    )
    save_rows(saved, rows, summary, setup)
    for strategy, c in summary["acceptance"].items():
        print(
            f"{strategy:9s} all {c['all_present_accuracy']:.3f}  "
            f"best single {c['best_single_accuracy']:.3f}  "
            f"gain {c['fusion_gain']:+.3f}  worst missing drop {c['worst_missing_drop']:.3f} "
            f"({c['worst_missing']})  {'PASS' if c['passes'] else 'FAIL'}"
        )
    print(f"best: {summary['best']}; wrote {doc} and {plot}")
    return 0


def _corruptions(args: argparse.Namespace) -> list[Any] | None:
    """--corruptions and --severities as Corruptions (kinds in the order given, each at each severity);
    None without --corruptions."""
    from fusion_pipeline.sim.corruptions import CORRUPTIONS, SEVERITIES, Corruption
    from fusion_pipeline.sim.errors import CorruptionError

    if args.corruptions is None:
        if args.severities is not None:
            raise ModelError("--severities: only with --corruptions")
        return None
    kinds = list(CORRUPTIONS) if "all" in args.corruptions else list(dict.fromkeys(args.corruptions))
    severities = _ints(args.severities, "--severities") if args.severities is not None else list(SEVERITIES)
    try:
        return [Corruption(kind, severity) for kind in kinds for severity in dict.fromkeys(severities)]
    except CorruptionError as exc:
        raise ModelError(f"--corruptions/--severities: {exc}") from exc


def _eval_outputs(args: argparse.Namespace) -> tuple[Path, Path, Path]:
    """The report, plot and rows of `eval`: --doc (default RUN_DIR/MODEL.md), whose section is updated in
    place, --plot (default model_eval.png beside the doc, which links it relative to its own folder) and
    RUN_DIR/eval.json, both new files. Creates the folders of the first two."""
    doc = args.doc or args.run_dir / "MODEL.md"
    plot = args.plot or doc.parent / "model_eval.png"
    doc.parent.mkdir(parents=True, exist_ok=True)
    plot.parent.mkdir(parents=True, exist_ok=True)
    saved = args.run_dir / "eval.json"
    check_output_path(doc, "--doc")
    for path, option in ((plot, "--plot"), (saved, "--run-dir (its eval.json)")):
        check_output_path(path, option, new=True)
    return doc, plot, saved


def _corruption_outputs(args: argparse.Namespace) -> tuple[Path, Path, Path]:
    """The report, plot and rows of `eval --corruptions`: --doc (default RUN_DIR/corruptions.md), --plot
    (default model_corruptions.png beside it) and the doc's name with .json; none may exist."""
    doc = args.doc or args.run_dir / "corruptions.md"
    plot = args.plot or doc.parent / "model_corruptions.png"
    saved = doc.with_suffix(".json")
    for path, option in ((doc, "--doc"), (plot, "--plot"), (saved, "--doc (its .json)")):
        check_output_path(path, option, new=True)
    return doc, plot, saved


def _load_runs(run_dir: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The suites of `run_dir`: its checkpoints, or those of each seed folder `train --seeds` made (one
    suite per seed, the same models in each), with every checkpoint's meta. Refuses checkpoints trained
    with other settings than the seed, but for the options baselines ignore (train.FUSED_ONLY): one run's
    baselines serve another run's fused models."""
    from fusion_pipeline.model.train import FUSED_ONLY, SUITE, load_checkpoint

    def has_checkpoints(folder: Path) -> bool:
        return any((folder / f"{name}.npz").is_file() for name in SUITE)

    seed_dirs = sorted(d for d in run_dir.glob(SEED_DIR.format("*")) if d.is_dir() and has_checkpoints(d))
    if has_checkpoints(run_dir) and seed_dirs:
        raise ModelError(
            f"{run_dir}: holds both a suite and seed folders ({', '.join(d.name for d in seed_dirs)}); "
            "evaluate one or the other (--run-dir)"
        )
    folders = seed_dirs or [run_dir]
    runs, metas, names, files = [], [], [], []
    for folder in folders:
        models = {}
        for name in SUITE:
            path = folder / f"{name}.npz"
            if path.is_file():
                models[name], meta = load_checkpoint(path)
                metas.append(meta)
                names.append(name)
                files.append(str(path.relative_to(run_dir)))
        runs.append(models)
    if not runs[0]:
        raise ModelError(f"{run_dir}: no checkpoints; run `fusion-pipeline model train` first")
    if any(list(models) != list(runs[0]) for models in runs):
        raise ModelError(f"{run_dir}: the seed folders hold different models; train every seed alike")

    def settings(meta: dict[str, Any], ignored: tuple[str, ...] = ()) -> str:
        train = {k: v for k, v in meta["train_config"].items() if k not in ("seed", *ignored)}
        return json.dumps([train, meta.get("config")], sort_keys=True)

    # Every model alike but for what baselines ignore (FUSED_ONLY), and the fused models alike in that too.
    shared = {settings(meta, FUSED_ONLY) for meta in metas}
    fused = {settings(meta) for name, meta in zip(names, metas, strict=True) if not name.endswith("-only")}
    if len(shared) > 1 or len(fused) > 1:
        # Which files agree with which: a suite trained into a run dir that held another config's, say.
        groups: dict[str, list[str]] = {}
        for name, file, meta in zip(names, files, metas, strict=True):
            key = settings(meta, FUSED_ONLY) if len(shared) > 1 else settings(meta)
            if len(shared) > 1 or not name.endswith("-only"):
                groups.setdefault(key, []).append(file)
        alike = "; ".join(", ".join(group) for group in groups.values())
        raise ModelError(
            f"{run_dir}: checkpoints were trained with different settings (alike: {alike}); retrain the "
            "suite, or give each its own --run-dir"
        )
    per_run = len(runs[0])
    seeds = [
        {m["train_config"]["seed"] for m in metas[i : i + per_run]} for i in range(0, len(metas), per_run)
    ]
    if any(len(s) > 1 for s in seeds):
        raise ModelError(f"{run_dir}: checkpoints of one suite were trained with different seeds; retrain it")
    return runs, metas


def _options(models: dict[str, Any], tc: dict[str, Any]) -> str:
    """The issue-17 options the suite was trained with, as the report states them ("" for none)."""
    fused = [m.config for m in models.values() if len(m.config.modalities) > 1]
    said = []
    if fused and fused[0].missing != "placeholder":
        said.append("missing inputs imputed")
    if any(m.config.audio_encoder != "cnn" for m in models.values()):
        said.append(f"audio encoder {next(iter(models.values())).config.audio_encoder}")
    said += [f"{key} {tc[key]:g}" for key in ("p_single", "distill_weight") if tc.get(key)]
    if tc.get("corruptions"):
        said.append(
            f"{tc['corruption_share']:g} of the training samples corrupted by {', '.join(tc['corruptions'])}"
        )
    return ", ".join(said)


def _suite_contract(run_dir: Path, contracts: list[ModelContract]) -> ModelContract:
    """The one contract the suite's models share (their fusion labels aside)."""
    unlabelled = {c.to_json(): c for c in (replace(c, fusion="") for c in contracts)}
    if len(unlabelled) > 1:
        raise ModelError(f"{run_dir}: checkpoints were trained for different sensors; retrain the suite")
    return next(iter(unlabelled.values()))


def _eval_config(path: Path | None, saved: dict[str, Any] | None) -> tuple[str | None, Config | None]:
    """The config to evaluate with, and how to name it: --config, else the one saved in the
    checkpoints, else none (the default suite)."""
    if path is not None:
        return str(path), load_config(path)
    if saved is not None:
        return saved["source"], parse_config(saved["text"], f"{saved['source']} (saved in the checkpoints)")
    return None, None


def _same_mounts(source: str | None, config: Config, saved: dict[str, Any], run_dir: Path) -> None:
    """Refuse a --config whose sensors sit elsewhere than those the checkpoints were trained with (their
    `saved` config): the test set would be rendered by other sensors, and the figures would pass for the
    trained suite's. A saved config this version refuses (its checks grew since) is not compared: the
    --config given is then the way to evaluate at all."""
    from fusion_pipeline.sim.dataset import sensors_for

    try:
        trained = _eval_config(None, saved)[1]
    except ConfigError:
        return
    if trained is None:
        return
    given = {s.input: s.mount for s in sensors_for(config)}
    moved = [
        f"{s.input} {given[s.input]} (trained: {s.mount})"
        for s in sensors_for(trained)
        if s.input in given and given[s.input] != s.mount
    ]
    if moved:
        raise ModelError(
            f"--config {source}: its sensors sit elsewhere than those the checkpoints in {run_dir} were "
            f"trained with ([streams.sim] mounts): {'; '.join(moved)}; evaluate with the config they were "
            "trained with (leave --config out: it is saved in the checkpoints)"
        )


def _sensor_summary(contract: ModelContract) -> str:
    """ "6 camera, 1 lidar, 3 radar, 1 audio": the suite's sensors by modality."""
    counts = Counter(spec.modality for spec in contract.inputs)
    return ", ".join(f"{n} {modality}" for modality, n in counts.items())


def _export(args: argparse.Namespace) -> int:
    """export a trained model to ONNX with the contract in its metadata

    Export one trained model to ONNX (dynamic batch) with the model contract as metadata, then check
    ONNX Runtime against torch on random inputs under all presence masks (at most 64 of them). A fused
    model is exported with its single-sensor fallback unless --no-fallback.
    """
    if args.out == DEFAULT_OUT and args.out.exists():  # the demo's model, which plain `run` takes
        raise ModelError(
            f"--out defaults to the packaged demo model {args.out}, which exists: give --out NEW.onnx "
            "(remove that file first only to replace the demo's model with one of the demo suite)"
        )
    check_output_path(args.out, "--out", new=True)
    with _train_extra():
        from fusion_pipeline.model.export import export_onnx
        from fusion_pipeline.model.fallback import SingleSensorFallback
        from fusion_pipeline.model.train import load_checkpoint

    name = args.model
    if name == "best":
        eval_path = args.run_dir / "eval.json"
        if not eval_path.is_file():
            raise ModelError(f"{eval_path}: missing; run `fusion-pipeline model eval` or pass --model")
        evaluation = json.loads(eval_path.read_text())
        name = evaluation["best"]
        if not any(check.get("passes") for check in evaluation.get("acceptance", {}).values()):
            log.warning(
                "%s: no strategy passed the eval's check; exporting %s, the best of them", eval_path, name
            )
    model, _ = load_checkpoint(args.run_dir / f"{name}.npz")
    single = len(model.modalities) == 1
    if single and args.fallback:
        raise ModelError(f"--fallback: {name} reads one modality only; it has nothing to fall back from")
    if not single and args.fallback is not False:
        paths = {m: args.run_dir / f"{m}-only.npz" for m in model.modalities}
        missing = [str(p) for p in paths.values() if not p.is_file()]
        if missing:
            raise ModelError(
                f"--fallback: {', '.join(missing)} missing; train them (`model train --models "
                f"{','.join(f'{m}-only' for m in paths)}`) or pass --no-fallback"
            )
        model = SingleSensorFallback(model, {m: load_checkpoint(p)[0] for m, p in paths.items()})
        name = f"{name} with the single-sensor fallback ({', '.join(paths)})"
    # export_onnx writes beside --out and links the file into place only once it passed the parity check:
    # a failed or interrupted export leaves no half model, and link(2) refuses a file that appeared meanwhile.
    worst = export_onnx(model, args.out)
    size_mb = args.out.stat().st_size / 1e6
    print(f"exported {name} to {args.out} ({size_mb:.2f} MB); max |torch - onnxruntime| = {worst:.2e}")
    return 0


def _info(args: argparse.Namespace) -> int:
    """print the contract an ONNX model carries (needs no torch)

    Print the model contract stored in an ONNX model's metadata.
    """
    from fusion_pipeline.inference import load_contract, resolve_model

    contract = load_contract(resolve_model(args.model_path))
    if args.json:
        print(contract.to_json())
        return 0
    print(f"{args.model_path}: contract v{contract.version}, fusion {contract.fusion or '?'}")
    print(f"  presence input {contract.presence!r}, one bit per input: {', '.join(contract.presence_order)}")
    width = max(len(name) for name in [*contract.tensors, *(out.name for out in contract.outputs)])
    print("  inputs:")
    for spec in contract.inputs:
        for name, shape in spec.tensors.items():
            what = f"[{spec.modality}] {spec.meaning}" if name == spec.name else f"mask of {spec.name}"
            print(f"    {name:{width}s} {spec.dtype} {_shape(shape):12s} {what}".rstrip())
            if name == spec.name and spec.preprocess:  # under its input, not under the input's mask
                print(f"      preprocess: {json.dumps(spec.preprocess, sort_keys=True)}")
    print("  outputs:")
    for out in contract.outputs:
        how = {"class_logits": ", ".join(out.classes), "regression": out.units}.get(out.kind, "")
        kind = f"{out.kind} ({how})" if how else out.kind
        print(f"    {out.name:{width}s} {_shape(out.shape):12s} {kind} {out.meaning}")
    return 0


def _shape(shape: tuple[int, ...]) -> str:
    return "x".join(str(d) for d in ("B", *shape))
