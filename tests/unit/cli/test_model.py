"""The minimum number of samples `model train --help` states is the training code's."""

from __future__ import annotations

import pytest

from fusion_pipeline.cli.model import MIN_SAMPLES


def test_the_stated_minimum_is_the_training_code_s() -> None:
    pytest.importorskip("torch")
    from fusion_pipeline.model.train import TrainConfig

    tc = TrainConfig()
    fits = [n for n in range(1, 1000) if n - int(n * tc.val_fraction) >= tc.batch_size]
    assert fits[0] == MIN_SAMPLES
