"""Dataset generation: contract-named arrays, labels from the world, cache hits, worker independence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fusion_pipeline.contract import default_contract
from fusion_pipeline.sim import (
    CONDITIONS,
    INPUTS,
    LABELS,
    DatasetError,
    World,
    WorldConfig,
    cache_dir,
    generate,
    render_sample,
)


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, np.ndarray], Path]:
    folder = tmp_path_factory.mktemp("cache")
    return generate(7, 6, folder=folder, workers=1), folder


def test_arrays_are_named_and_shaped_like_the_contract(small: tuple[dict[str, np.ndarray], Path]) -> None:
    data, _ = small
    assert set(data) == set(INPUTS) | set(LABELS)
    for spec in default_contract().inputs:
        if spec.modality is not None:
            assert data[spec.name].shape == (6, *spec.shape)
            assert data[spec.name].dtype == np.float32
    assert data["class"].dtype == np.int64 and data["class"].shape == (6,)
    assert (
        data["position"].shape == (6, 2)
        and data["velocity"].shape == (6, 1)
        and data["siren"].shape == (6, 1)
    )
    assert set(data["condition"].tolist()) <= set(range(len(CONDITIONS)))


def test_labels_come_from_the_world_at_the_reference_time(small: tuple[dict[str, np.ndarray], Path]) -> None:
    data, _ = small
    world = World(7)
    for i in (0, 5):
        sample = render_sample(world, i)
        assert sample["class"] == data["class"][i]
        np.testing.assert_array_equal(sample["position"], data["position"][i])
        np.testing.assert_array_equal(sample["lidar"], data["lidar"][i])
        assert CONDITIONS[data["condition"][i]] == world.episode(i).condition


def test_cache_is_reused_and_parallel_workers_render_the_same_samples(
    small: tuple[dict[str, np.ndarray], Path],
) -> None:
    data, folder = small
    files = list(folder.glob("*.npz"))
    assert len(files) == 1 and "seed7-n6" in files[0].name
    cached = generate(7, 6, folder=folder)
    for name in data:
        # The camera is stored as float16 in the cache file.
        atol = 2e-3 if name == "camera" else 0
        np.testing.assert_allclose(cached[name], data[name], atol=atol, rtol=1e-3 if atol else 0)
    parallel = generate(7, 6, folder=folder, workers=2, cache=False)
    for name in data:
        np.testing.assert_array_equal(parallel[name], data[name])


def test_cache_key_depends_on_the_world_config(tmp_path: Path) -> None:
    generate(7, 2, folder=tmp_path, workers=1)
    generate(7, 2, folder=tmp_path, workers=1, config=WorldConfig(condition_mix=(1.0, 0.0, 0.0, 0.0)))
    assert len(list(tmp_path.glob("*.npz"))) == 2


def test_cache_dir_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FUSION_PIPELINE_CACHE", str(tmp_path))
    assert cache_dir() == tmp_path
    monkeypatch.delenv("FUSION_PIPELINE_CACHE")
    assert cache_dir() == Path.home() / ".cache" / "fusion-pipeline"


def test_bad_requests_and_broken_cache_files_are_reported(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="n_samples"):
        generate(1, 0, folder=tmp_path)
    generate(1, 1, folder=tmp_path, workers=1)
    (cache_file,) = tmp_path.glob("*.npz")
    cache_file.write_bytes(b"not a zip")
    with pytest.raises(DatasetError, match="unreadable"):
        generate(1, 1, folder=tmp_path)
