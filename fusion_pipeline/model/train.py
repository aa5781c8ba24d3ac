"""Training: dataset from the synthetic world, sensor dropout, multi-task loss, npz checkpoints.

A "suite" is the set of models one `fusion-pipeline model train` produces on the same data for one model
contract (the default's, or one per config stream, `contract_for_config`): the three fusion strategies and
one single-modality baseline per modality (using every input of it), so `model eval` can compare them
honestly. Checkpoints are plain .npz arrays plus a JSON blob with the model config and the contract
(np.load with allow_pickle=False): no pickle. A checkpoint is a new file: never written over.

Single-sensor strength (off by default, so the documented run is unchanged): `TrainConfig.p_single` keeps
the inputs of one modality only in that share of the samples, and `TrainConfig.distill_weight` pulls a
fused student's class distribution, where one modality is left, towards that modality's own model (a
teacher: the suite's "<modality>-only" baseline), `distillation_loss`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from fusion_pipeline.contract import MODALITIES, ModelContract, default_contract
from fusion_pipeline.files import write_new
from fusion_pipeline.model.errors import ModelError
from fusion_pipeline.model.fusion import FUSIONS
from fusion_pipeline.model.net import FusionNet, ModelConfig

if TYPE_CHECKING:
    from fusion_pipeline.sim.corruptions import Corruption, CorruptionMix
    from fusion_pipeline.sim.dataset import Sensor

__all__ = [
    "FUSED_ONLY",
    "LABEL_NAMES",
    "SUITE",
    "TrainConfig",
    "distillation_loss",
    "dropout_masks",
    "input_tensors",
    "load_checkpoint",
    "load_dataset",
    "model_config_for",
    "save_checkpoint",
    "suite",
    "to_tensors",
    "train_model",
]

log = logging.getLogger(__name__)

LABEL_NAMES: tuple[str, ...] = ("class", "position", "velocity", "siren")
#: Every model a suite can have: the fusion strategies, then "<modality>-only" baselines.
SUITE: tuple[str, ...] = (*FUSIONS, *(f"{m}-only" for m in MODALITIES))
#: TrainConfig fields a single-modality baseline ignores (`train_model`): baselines trained with any
#: values of them are the same models, so one run's baselines serve another's fused models.
FUSED_ONLY: tuple[str, ...] = ("p_single", "distill_weight", "distill_temperature")


@dataclass
class TrainConfig:
    world_seed: int = 1  # the world seed of the training set; evaluation uses a different one
    n_samples: int = 6000
    val_fraction: float = 0.1  # tail of the training set held out for the per-epoch accuracy
    seed: int = 0  # torch: initialisation, shuffling, modality dropout
    epochs: int = 10
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-2
    p_all_present: float = 0.3  # sensor dropout: else a uniformly drawn non-empty subset of inputs is kept
    w_position: float = 0.5
    w_velocity: float = 0.5
    w_siren: float = 0.5
    threads: int = 1  # more threads thrash on a shared 2-core machine (measured 5-7x slower per step)
    # Issue 17's options, all off by default (docs/MODEL.md, "Missing, weak and degraded sensors"):
    p_single: float = 0.0  # of all samples, this share keeps one modality's inputs only (drawn uniformly)
    distill_weight: float = 0.0  # fused models: weight of the distillation from the "-only" teachers
    distill_temperature: float = 2.0
    # Degraded sensors in the training set (sim/corruptions.py): this share of samples corrupted, each by
    # one of these "kind:severity" corruptions drawn uniformly; () = a clean training set.
    corruptions: tuple[str, ...] = ()
    corruption_share: float = 0.0

    def corruption_mix(self, where: str = "TrainConfig.corruptions/corruption_share") -> CorruptionMix | None:
        """The training set's CorruptionMix, or None for a clean one; a bad one is a ModelError naming
        `where` (the CLI: its options)."""
        from fusion_pipeline.sim.corruptions import Corruption, CorruptionMix
        from fusion_pipeline.sim.errors import CorruptionError

        if not self.corruptions and not self.corruption_share:
            return None
        try:
            return CorruptionMix(tuple(map(Corruption.parse, self.corruptions)), self.corruption_share)
        except CorruptionError as exc:
            raise ModelError(f"{where}: {exc}") from exc


def suite(contract: ModelContract) -> tuple[str, ...]:
    """The suite for `contract`: the fusion strategies, then a baseline per modality it has."""
    return tuple(n for n in SUITE if n in FUSIONS or contract.inputs_for(n.removesuffix("-only")))


def input_tensors(contract: ModelContract) -> tuple[str, ...]:
    """The dataset arrays a model of `contract` reads: its graph inputs but the presence vector, which
    training and evaluation make."""
    return tuple(name for name in contract.tensors if name != contract.presence)


def model_config_for(name: str, base: ModelConfig | None = None) -> ModelConfig:
    """The ModelConfig of suite member `name` ("attention", "camera-only", ...)."""
    base = base or ModelConfig()
    if name in FUSIONS:
        return ModelConfig(**{**base.to_dict(), "fusion": name})
    modality = name.removesuffix("-only")
    if name.endswith("-only") and modality in MODALITIES:
        # A baseline is the concat model with one modality's encoder: the same capacity per sensor as the
        # fused ones, and the placeholder: it is the reference of a sensor trained alone.
        return ModelConfig(
            **{**base.to_dict(), "fusion": "concat", "modalities": (modality,), "missing": "placeholder"}
        )
    raise ModelError(f"unknown model {name!r}; expected one of {SUITE}")


# ---- data ----------------------------------------------------------------------------------------------


def load_dataset(
    world_seed: int,
    n_samples: int,
    cache_dir: str | Path | None = None,
    contract: ModelContract | None = None,
    sensors: Sequence[Sensor] | None = None,
    corruption: Corruption | CorruptionMix | None = None,
) -> dict[str, np.ndarray]:
    """World samples as arrays named like `contract`'s inputs (default: the default contract's) plus
    LABEL_NAMES, from fusion_pipeline.sim.dataset, which caches them (`cache_dir` None = its default
    folder). `sensors` (`sim.dataset.sensors_for(config)`) renders a config's sensors; None the demo's
    four. `corruption` degrades the sensors of its modality, a mix those of some samples
    (sim/corruptions.py)."""
    from fusion_pipeline.sim import dataset  # numpy-only; imported late so this module loads without it

    contract = contract or default_contract()
    t0 = time.perf_counter()
    sensors = sensors or dataset.DEFAULT_SENSORS
    data = dataset.generate(
        world_seed, n_samples, folder=cache_dir, progress=True, sensors=sensors, corruption=corruption
    )
    log.info("dataset: world seed %d, %d samples, %.0f s", world_seed, n_samples, time.perf_counter() - t0)
    missing = [k for k in (*input_tensors(contract), *LABEL_NAMES) if k not in data]
    if missing:
        raise ModelError(
            f"dataset of world seed {world_seed} lacks arrays {missing} of the model's inputs (it has "
            f"{sorted(data)})"
        )
    return data


def to_tensors(
    data: Mapping[str, np.ndarray], contract: ModelContract | None = None
) -> dict[str, torch.Tensor]:
    """`contract`'s input arrays (default: the default contract's) and the labels as torch tensors."""
    names = (*input_tensors(contract or default_contract()), *LABEL_NAMES)
    out = {k: torch.from_numpy(np.ascontiguousarray(data[k])).float() for k in names}
    out["class"] = out["class"].long().reshape(-1)
    out["position"] = out["position"].reshape(-1, 2)
    out["velocity"] = out["velocity"].reshape(-1, 1)
    out["siren"] = out["siren"].reshape(-1, 1)
    return out


def dropout_masks(
    n: int,
    n_inputs: int,
    p_all: float,
    gen: torch.Generator,
    p_single: float = 0.0,
    modality_of: torch.Tensor | None = None,
) -> torch.Tensor:
    """Sensor dropout, one bit per sensor input: all present with probability p_all, else a uniformly
    drawn non-empty subset. Then, with `p_single` > 0, that share of all rows keeps only the inputs of one
    modality, drawn uniformly (`modality_of`: each input's modality index; default, each input its own);
    with 0 nothing more is drawn from `gen`, so the masks are those of a run without the option."""
    codes = torch.randint(2**n_inputs - 1, (n,), generator=gen) + 1
    pick = ((codes[:, None] >> torch.arange(n_inputs)) & 1).float()
    keep_all = torch.rand(n, 1, generator=gen) < p_all
    masks = torch.where(keep_all, torch.ones_like(pick), pick)
    if p_single <= 0:
        return masks
    modality_of = torch.arange(n_inputs) if modality_of is None else modality_of
    kinds = torch.unique(modality_of)
    kept = kinds[torch.randint(len(kinds), (n,), generator=gen)]
    single = (modality_of[None, :] == kept[:, None]).float()
    return torch.where(torch.rand(n, 1, generator=gen) < p_single, single, masks)


def distillation_loss(
    student_logits: torch.Tensor,
    presence: torch.Tensor,
    teacher_logits: Mapping[str, torch.Tensor],
    modality_of: Sequence[str],
    temperature: float,
) -> torch.Tensor:
    """Pull the student's class distribution towards a single-modality teacher's where only that
    modality's inputs are present: T^2 KL(softmax(teacher / T) || softmax(student / T)), averaged over the
    rows of the batch whose present inputs are all of one modality that has a teacher (0 if none).

    `presence` [B, N] is the student's input bits, `modality_of` the modality of each of its N inputs,
    `teacher_logits` each teacher's class logits for the whole batch, by modality."""
    per_row = student_logits.new_zeros(len(student_logits))
    taught = torch.zeros(len(student_logits), dtype=torch.bool)
    log_student = F.log_softmax(student_logits / temperature, dim=1)
    for modality, logits in teacher_logits.items():
        own = torch.tensor([m == modality for m in modality_of])
        alone = (presence[:, own].sum(dim=1) > 0) & (presence[:, ~own].sum(dim=1) == 0)
        teacher = F.log_softmax(logits / temperature, dim=1)
        kl = (teacher.exp() * (teacher - log_student)).sum(dim=1)
        per_row = torch.where(alone, kl, per_row)
        taught |= alone
    if not taught.any():
        return per_row.sum() * 0.0
    return temperature**2 * per_row[taught].mean()


def _loss(
    model: FusionNet, outputs: tuple[torch.Tensor, ...], batch: dict[str, torch.Tensor], tc: TrainConfig
) -> torch.Tensor:
    logits, position, velocity, siren = outputs
    # Class 0 is "none": no actor, so no position or velocity to learn.
    has_actor = (batch["class"] != 0).float()
    n_actor = has_actor.sum().clamp_min(1.0)
    # Regression errors in standardised units, so the loss weights mean the same for every task.
    pos_err = F.smooth_l1_loss(
        position / model.heads.pos_std, batch["position"] / model.heads.pos_std, reduction="none"
    ).mean(dim=1)
    vel_err = F.smooth_l1_loss(
        velocity / model.heads.vel_std, batch["velocity"] / model.heads.vel_std, reduction="none"
    ).mean(dim=1)
    return (
        F.cross_entropy(logits, batch["class"])
        + tc.w_position * (pos_err * has_actor).sum() / n_actor
        + tc.w_velocity * (vel_err * has_actor).sum() / n_actor
        + tc.w_siren * F.binary_cross_entropy_with_logits(siren, batch["siren"])
    )


@torch.no_grad()
def _accuracy(model: FusionNet, data: dict[str, torch.Tensor], batch_size: int = 256) -> float:
    model.eval()
    contract = model.contract
    n = len(data["class"])
    correct = 0
    for i in range(0, n, batch_size):
        batch = {k: v[i : i + batch_size] for k, v in data.items()}
        batch[contract.presence] = torch.ones(len(batch["class"]), len(contract.presence_order))
        logits = model(*(batch[name] for name in contract.tensors))[0]
        correct += int((logits.argmax(1) == batch["class"]).sum())
    return correct / max(n, 1)


def train_model(
    model_config: ModelConfig,
    tc: TrainConfig,
    data: dict[str, torch.Tensor],
    progress: bool = True,
    desc: str = "",
    contract: ModelContract | None = None,
    teachers: Mapping[str, FusionNet] | None = None,
) -> tuple[FusionNet, list[dict[str, float]]]:
    """Train one model of `contract` (default: the default contract) on `data` (from to_tensors); returns
    it with one history row per epoch. A fused model is trained with the single-sensor recipe of `tc`
    (`p_single`; `distill_weight` > 0 with `teachers`: by modality, trained models of the same contract,
    `distillation_loss`); a single-modality model never is."""
    torch.manual_seed(tc.seed)
    torch.set_num_threads(tc.threads)
    gen = torch.Generator().manual_seed(tc.seed)
    n = len(data["class"])
    n_val = int(n * tc.val_fraction)
    train = {k: v[: n - n_val] for k, v in data.items()}
    val = {k: v[n - n_val :] for k, v in data.items()}
    n_train = n - n_val
    if n_train < tc.batch_size:
        raise ModelError(f"training set of {n_train} samples is smaller than one batch ({tc.batch_size})")

    model = FusionNet(model_config, contract)
    presence, n_inputs = model.contract.presence, len(model.contract.presence_order)
    modality_names = [model.contract.input(name).modality for name in model.contract.presence_order]
    modality_of = torch.tensor([MODALITIES.index(m) for m in modality_names])
    # The single-sensor recipe is for fused models; a baseline reads one modality anyway.
    fused = len(model_config.modalities) > 1
    p_single = tc.p_single if fused else 0.0
    teachers = dict(teachers or {}) if fused else {}
    if bool(teachers) != (fused and tc.distill_weight > 0):
        raise ModelError(
            f"TrainConfig.distill_weight {tc.distill_weight} with {len(teachers)} teachers: distillation "
            "needs both a weight above 0 and the single-modality teachers"
        )
    for teacher in teachers.values():
        teacher.eval()
    model.fit_normalisation(
        train, train["position"][train["class"] != 0], train["velocity"][train["class"] != 0]
    )
    opt = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    steps_per_epoch = n_train // tc.batch_size
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=tc.lr, total_steps=tc.epochs * steps_per_epoch, pct_start=0.15
    )
    history: list[dict[str, float]] = []
    bar = tqdm(total=tc.epochs * steps_per_epoch, desc=desc or model_config.fusion, disable=not progress)
    for epoch in range(tc.epochs):
        model.train()
        order = torch.randperm(n_train, generator=gen)
        total, t0 = 0.0, time.perf_counter()
        for step in range(steps_per_epoch):
            idx = order[step * tc.batch_size : (step + 1) * tc.batch_size]
            batch = {k: v[idx] for k, v in train.items()}
            batch[presence] = dropout_masks(len(idx), n_inputs, tc.p_all_present, gen, p_single, modality_of)
            outputs, aux = model.forward_with_aux(batch)
            loss = _loss(model, outputs, batch, tc) + aux
            if teachers:
                with torch.no_grad():
                    taught = {m: t(*(batch[k] for k in t.contract.tensors))[0] for m, t in teachers.items()}
                # One forward pass of each teacher per batch; the loss reads the rows it taught.
                loss = loss + tc.distill_weight * distillation_loss(
                    outputs[0], batch[presence], taught, modality_names, tc.distill_temperature
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item()
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{total / (step + 1):.3f}")
        row = {
            "epoch": epoch + 1,
            "loss": total / steps_per_epoch,
            "val_accuracy": _accuracy(model, val) if n_val else float("nan"),
            "seconds": time.perf_counter() - t0,
        }
        history.append(row)
        bar.set_postfix(epoch=epoch + 1, loss=f"{row['loss']:.3f}", val_acc=f"{row['val_accuracy']:.3f}")
    bar.close()
    model.eval()
    return model, history


# ---- checkpoints ---------------------------------------------------------------------------------------

_META = "__meta__"


def save_checkpoint(path: str | Path, model: FusionNet, meta: dict[str, Any]) -> None:
    """Weights as named arrays plus a JSON blob with the ModelConfig, the contract and `meta` (history,
    seeds), in a new file: a model is never written over (ModelError) nor left half written."""
    arrays = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
    blob = json.dumps(
        {"model_config": model.config.to_dict(), "contract": model.contract.to_json(), **meta}
    ).encode()
    arrays[_META] = np.frombuffer(blob, dtype=np.uint8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(partial: Path) -> None:
        with partial.open("wb") as f:  # a file object: np.savez adds no ".npz" to its name
            np.savez(f, **arrays)

    write_new(path, write, ModelError)


def load_checkpoint(path: str | Path) -> tuple[FusionNet, dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        there = sorted(p.stem for p in path.parent.glob("*.npz")) if path.parent.is_dir() else []
        raise ModelError(
            f"{path}: no such checkpoint; {path.parent} holds "
            + (", ".join(there) if there else "none (run `fusion-pipeline model train` first)")
        )
    with np.load(path, allow_pickle=False) as f:
        if _META not in f.files:
            raise ModelError(f"{path}: not a fusion-pipeline checkpoint (no {_META} entry)")
        meta = json.loads(f[_META].tobytes().decode())
        state = {k: torch.from_numpy(f[k]) for k in f.files if k != _META}
    config = ModelConfig.from_dict(meta.pop("model_config"))
    # Checkpoints from before contract v2 hold the default contract's model.
    contract = ModelContract.from_json(meta.pop("contract")) if "contract" in meta else None
    model = FusionNet(config, contract)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ModelError(f"{path}: weights do not match the model config: {exc}") from exc
    return model.eval(), meta
