"""The single-sensor recipe (issue 17, item 2): single-modality presence patterns and distillation from the
single-modality models, computed as documented, and nothing drawn or added when they are off."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tiny_model import TINY, random_data

from fusion_pipeline.contract import default_contract
from fusion_pipeline.model import ModelError
from fusion_pipeline.model.net import ModelConfig
from fusion_pipeline.model.train import (
    TrainConfig,
    distillation_loss,
    dropout_masks,
    model_config_for,
    train_model,
)

SMALL = ModelConfig(**TINY)


def test_without_p_single_the_masks_and_the_generator_are_as_before() -> None:
    gen, reference = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    masks = dropout_masks(500, 4, 0.3, gen)
    # The sensor dropout of the documented run, written out.
    codes = torch.randint(2**4 - 1, (500,), generator=reference) + 1
    pick = ((codes[:, None] >> torch.arange(4)) & 1).float()
    keep_all = torch.rand(500, 1, generator=reference) < 0.3
    torch.testing.assert_close(masks, torch.where(keep_all, torch.ones_like(pick), pick))
    assert torch.equal(gen.get_state(), reference.get_state())  # nothing more was drawn


def test_p_single_keeps_one_modality_s_inputs_in_that_share_of_rows() -> None:
    modality_of = torch.tensor([0, 0, 1, 2])  # two cameras, a lidar, a radar
    masks = dropout_masks(4000, 4, 0.3, torch.Generator().manual_seed(0), 1.0, modality_of)
    singles = {tuple(m) for m in masks.tolist()}
    assert singles == {(1.0, 1.0, 0.0, 0.0), (0.0, 0.0, 1.0, 0.0), (0.0, 0.0, 0.0, 1.0)}
    counts = torch.unique(masks, dim=0, return_counts=True)[1].float() / 4000
    assert torch.allclose(counts, torch.full((3,), 1 / 3), atol=0.03)  # each modality alike

    masks = dropout_masks(4000, 4, 0.3, torch.Generator().manual_seed(0), 0.5, modality_of)
    one_modality = [len({int(modality_of[i]) for i in np.flatnonzero(m)}) == 1 for m in masks.numpy()]
    # Half the rows by the option, plus the few the ordinary dropout draws with one modality (5/15 of 0.7).
    assert np.mean(one_modality) == pytest.approx(0.5 + 0.5 * 0.7 * 5 / 15, abs=0.03)


def test_distillation_loss_is_the_tempered_kl_over_single_modality_rows() -> None:
    torch.manual_seed(0)
    student = torch.randn(5, 5)
    teachers = {"camera": torch.randn(5, 5), "lidar": torch.randn(5, 5)}
    modality_of = ["camera", "camera", "lidar", "radar"]
    presence = torch.tensor(
        [
            [1.0, 0.0, 0.0, 0.0],  # one camera: camera's teacher
            [1.0, 1.0, 0.0, 0.0],  # both cameras: camera's teacher
            [0.0, 0.0, 1.0, 0.0],  # lidar alone: lidar's teacher
            [0.0, 0.0, 0.0, 1.0],  # radar alone: no teacher
            [1.0, 0.0, 1.0, 0.0],  # two modalities: none
        ]
    )
    t = 2.0
    got = distillation_loss(student, presence, teachers, modality_of, t)
    rows = [(0, "camera"), (1, "camera"), (2, "lidar")]
    kl = [
        F.kl_div(
            F.log_softmax(student[i] / t, dim=0),
            F.log_softmax(teachers[m][i] / t, dim=0),
            log_target=True,
            reduction="sum",
        )
        for i, m in rows
    ]
    torch.testing.assert_close(got, t**2 * torch.stack(kl).mean())
    # The student's own distribution gives 0; no taught row gives 0.
    same = distillation_loss(student, presence, {"camera": student}, modality_of, t)
    assert same.abs() < 1e-6
    assert distillation_loss(student[3:], presence[3:], {"camera": student[3:]}, modality_of, t) == 0


def test_distillation_trains_a_fused_student_from_its_teachers() -> None:
    contract = default_contract()
    data = random_data(contract, 16)
    tc = TrainConfig(epochs=1, batch_size=8, val_fraction=0.0, p_single=0.5, distill_weight=1.0)
    plain = replace(tc, p_single=0.0, distill_weight=0.0)
    teachers = {
        m: train_model(model_config_for(f"{m}-only", SMALL), plain, data, progress=False)[0]
        for m in ("camera", "lidar")
    }
    # A baseline ignores the recipe (and so the same TrainConfig trains the whole suite).
    base, _ = train_model(model_config_for("radar-only", SMALL), plain, data, progress=False)
    again, _ = train_model(model_config_for("radar-only", SMALL), tc, data, progress=False)
    for a, b in zip(base.state_dict().values(), again.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)
    student, history = train_model(
        replace(SMALL, fusion="attention"), tc, data, progress=False, teachers=teachers
    )
    without, history_without = train_model(
        replace(SMALL, fusion="attention"), replace(tc, distill_weight=0.0), data, progress=False
    )
    assert np.isfinite(history[0]["loss"]) and history[0]["loss"] != history_without[0]["loss"]
    with pytest.raises(ModelError, match="distillation needs both"):
        train_model(replace(SMALL, fusion="attention"), tc, data, progress=False)
    with pytest.raises(ModelError, match="distillation needs both"):
        train_model(replace(SMALL, fusion="attention"), plain, data, progress=False, teachers=teachers)
