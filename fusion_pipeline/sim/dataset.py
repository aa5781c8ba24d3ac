"""Model-ready training data rendered from the synthetic world, cached as an .npz file. numpy only.

Sample i comes from episode i of ``World(seed, config)``. Like the live pipeline, its sensors are
captured at slightly different times: the camera (the reference stream) at t, episode time uniform in
[0.6, 2.0) s; the lidar within +-50 ms and the radar within +-40 ms of t; the audio window is the
0.5 s before t. Labels are taken at t. Every sensor payload goes through ``fusion_pipeline.preprocess``,
the same code the ingest nodes run.

Arrays (N = n_samples), named like the contract inputs:
camera (N, 3, 96, 128), lidar (N, 3, 64, 64), radar (N, 64, 5), radar_mask (N, 64), audio (N, 1, 40, 48),
all float32; labels class (N,) int64, position (N, 2) float32, velocity (N, 1) float32, siren (N, 1)
float32; condition (N,) int64 indexing ``world.CONDITIONS``.

The cache file stores the camera as float16 (half the disk, ~74 KB a sample; the normalised values need
no more than float16's 3 digits) and is loaded back as float32. 4000 samples take ~0.8 GB in memory.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import multiprocessing
import os
import tempfile
from pathlib import Path

import numpy as np
from tqdm import tqdm

from fusion_pipeline.contract import AUDIO_SAMPLE_RATE, AUDIO_WINDOW_S, default_contract
from fusion_pipeline.preprocess import preprocess_sample
from fusion_pipeline.sim.errors import DatasetError
from fusion_pipeline.sim.world import CONDITIONS, World, WorldConfig

__all__ = ["DATASET_VERSION", "INPUTS", "LABELS", "cache_dir", "generate", "render_sample"]

#: Bump whenever the world or the preprocessing changes what a seed renders: it is part of the cache key.
DATASET_VERSION = 3
INPUTS: tuple[str, ...] = tuple(s.name for s in default_contract().inputs if s.modality is not None)
LABELS: tuple[str, ...] = ("class", "position", "velocity", "siren", "condition")

_T_REF_S = (0.6, 2.0)  # episode time of the reference capture; the primary actor is placed at 1.0 s
_JITTER_NS = {"lidar": 50_000_000, "radar": 40_000_000}
_AUDIO_SAMPLES = int(AUDIO_SAMPLE_RATE * AUDIO_WINDOW_S)
_CHUNK = 25  # samples per worker task


def cache_dir() -> Path:
    """$FUSION_PIPELINE_CACHE, else ~/.cache/fusion-pipeline."""
    return Path(os.environ.get("FUSION_PIPELINE_CACHE") or Path.home() / ".cache" / "fusion-pipeline")


def _shapes(n: int) -> dict[str, tuple[tuple[int, ...], str]]:
    shapes = {s.name: ((n, *s.shape), "float32") for s in default_contract().inputs if s.name in INPUTS}
    shapes.update(
        {
            "class": ((n,), "int64"),
            "position": ((n, 2), "float32"),
            "velocity": ((n, 1), "float32"),
            "siren": ((n, 1), "float32"),
            "condition": ((n,), "int64"),
        }
    )
    return shapes


def render_sample(world: World, episode: int) -> dict[str, np.ndarray]:
    """One sample: every modality captured near a reference time in `episode`, preprocessed, plus labels."""
    rng = np.random.default_rng([world.seed, episode, 1000])
    t_ref = world.episode_start_ns(episode) + int(rng.uniform(*_T_REF_S) * 1e9)
    t_lidar, t_radar = (t_ref + int(rng.uniform(-1.0, 1.0) * _JITTER_NS[m]) for m in ("lidar", "radar"))
    out = {
        **preprocess_sample("camera", world.camera(t_ref)),
        **preprocess_sample("lidar", world.lidar(t_lidar)),
        **preprocess_sample("radar", world.radar(t_radar)),
        **preprocess_sample("audio", world.audio(t_ref - int(AUDIO_WINDOW_S * 1e9), _AUDIO_SAMPLES)),
    }
    labels = world.labels(t_ref)
    out["class"] = np.int64(labels.class_id)
    out["position"] = np.array(labels.position, np.float32)
    out["velocity"] = np.array([labels.velocity], np.float32)
    out["siren"] = np.array([float(labels.siren)], np.float32)
    out["condition"] = np.int64(CONDITIONS.index(labels.condition))
    return out


def _fill(args: tuple[int, dict[str, object], str, int, int, int]) -> int:
    """Worker: render samples [i0, i1) into the memory-mapped .npy files in `folder`; returns the count."""
    seed, config, folder, n, i0, i1 = args
    world = World(seed, WorldConfig(**config))
    arrays = {name: np.load(Path(folder) / f"{name}.npy", mmap_mode="r+") for name in _shapes(n)}
    for i in range(i0, i1):
        for name, value in render_sample(world, i).items():
            arrays[name][i] = value
    for array in arrays.values():
        array.flush()
    return i1 - i0


def _cache_path(folder: Path, seed: int, n_samples: int, config: WorldConfig) -> Path:
    digest = hashlib.sha256(json.dumps(dataclasses.asdict(config), sort_keys=True).encode()).hexdigest()[:12]
    return folder / f"world-v{DATASET_VERSION}-seed{seed}-n{n_samples}-{digest}.npz"


def _load(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            data = {name: npz[name] for name in npz.files}
    except (OSError, ValueError) as exc:
        raise DatasetError(f"dataset cache {path} is unreadable ({exc}); delete it to regenerate") from exc
    missing = set(INPUTS + LABELS) - set(data)
    if missing:
        raise DatasetError(f"dataset cache {path} lacks {sorted(missing)}; delete it to regenerate")
    data["camera"] = data["camera"].astype(np.float32)
    return data


def generate(
    seed: int,
    n_samples: int,
    *,
    config: WorldConfig | None = None,
    cache: bool = True,
    folder: str | Path | None = None,
    workers: int | None = None,
    progress: bool = False,
) -> dict[str, np.ndarray]:
    """Render (or load from the cache) `n_samples` model-ready samples of the world with `seed`.

    `folder` defaults to cache_dir(); `workers` to the number of CPUs (at most 8). With cache=False
    nothing is read or written there except a temporary scratch folder.
    """
    if n_samples <= 0:
        raise DatasetError(f"n_samples must be positive, got {n_samples}")
    config = config or WorldConfig()
    folder = Path(folder) if folder is not None else cache_dir()
    path = _cache_path(folder, seed, n_samples, config)
    if cache and path.exists():
        return _load(path)
    folder.mkdir(parents=True, exist_ok=True)
    workers = max(1, min(workers or os.cpu_count() or 1, 8))
    with tempfile.TemporaryDirectory(dir=folder, prefix="scratch-") as scratch:
        # Workers write straight into shared memory-mapped files: no sample is ever pickled between processes.
        for name, (shape, dtype) in _shapes(n_samples).items():
            npy = Path(scratch) / f"{name}.npy"
            np.lib.format.open_memmap(npy, mode="w+", dtype=dtype, shape=shape).flush()
        tasks = [
            (seed, dataclasses.asdict(config), scratch, n_samples, i0, min(i0 + _CHUNK, n_samples))
            for i0 in range(0, n_samples, _CHUNK)
        ]
        bar = tqdm(total=n_samples, desc=f"rendering world seed {seed}", unit="sample", disable=not progress)
        if workers == 1:
            for task in tasks:
                bar.update(_fill(task))
        else:
            with multiprocessing.get_context("fork").Pool(workers) as pool:
                for done in pool.imap_unordered(_fill, tasks):
                    bar.update(done)
        bar.close()
        data = {name: np.load(Path(scratch) / f"{name}.npy") for name in _shapes(n_samples)}
    if cache:
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, **{**data, "camera": data["camera"].astype(np.float16)})
        os.replace(tmp, path)  # atomic: a concurrent reader sees the old state or the whole file
    return data
