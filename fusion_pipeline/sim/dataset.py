"""Model-ready training data rendered from the synthetic world for any sensor suite, cached as an .npz file.

A suite is a sequence of `Sensor`s: the model input each one feeds, its modality and its `Mount`.
The default, `DEFAULT_SENSORS`, is the shipped model's: one camera, lidar, radar and microphone at the
default mount, feeding the inputs camera, lidar, radar and audio. `sensors_for(config)` builds a
config's suite, one sensor per stream.

Sample i comes from episode i of ``World(seed, config)``. Like the live pipeline, its sensors are
captured at slightly different times: the cameras at t, episode time uniform in [0.6, 2.0) s; each
lidar within +-50 ms and each radar within +-40 ms of t (one draw per sensor, in suite order); the audio
window is the 0.5 s before t. Labels are taken at t. Every payload goes through the front end of the
shipped model's input of its modality (``fusion_pipeline.preprocess``), the same code the ingest nodes
run.

Arrays (N = n_samples) are named after each sensor's input; a radar NAME also fills NAME_mask. The
default suite gives camera (N, 3, 96, 128), lidar (N, 3, 64, 64), radar (N, 64, 5), radar_mask (N, 64),
audio (N, 1, 40, 48), all float32; labels class (N,) int64, position (N, 2) float32, velocity (N, 1)
float32, siren (N, 1) float32; condition (N,) int64 indexing ``world.CONDITIONS``.

A `Corruption` (sim/corruptions.py) degrades every sensor of its modality before its front end: the
same scenes, labels and capture times as the clean seed, each corrupted sensor drawing its corruption's
randomness from its own generator (seeded by world seed, episode and the sensor's place in the suite),
so the clean sensors are bitwise those of the clean seed. A `CorruptionMix` picks each sample's
corruption, or none, from another generator of the sample's own.

The cache file stores camera arrays as float16 (half the disk, ~74 KB a sample each; the normalised
values need no more than float16's 3 digits) and is loaded back as float32; a render returns its cameras
rounded the same way, so rendering and loading give the same arrays. 4000 samples of the default
suite take ~0.8 GB in memory, and each further camera 0.6 GB. Its name holds the world config and, for
any suite but the default (whose caches keep their names), the suite.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import multiprocessing
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm import tqdm

from fusion_pipeline.contract import MODALITIES, InputSpec, default_contract, default_input
from fusion_pipeline.preprocess import InputPreprocessor, preprocessor_for
from fusion_pipeline.sim.corruptions import Corruption, CorruptionMix
from fusion_pipeline.sim.drivers import SimSettings
from fusion_pipeline.sim.errors import DatasetError
from fusion_pipeline.sim.world import CONDITIONS, DEFAULT_MOUNT, Mount, World, WorldConfig

if TYPE_CHECKING:
    from fusion_pipeline.config import Config, StreamConfig

__all__ = [
    "DATASET_VERSION",
    "DEFAULT_SENSORS",
    "INPUTS",
    "LABELS",
    "Sensor",
    "cache_dir",
    "generate",
    "render_sample",
    "sensors_for",
    "trained_streams",
]

#: Bump whenever the world or the preprocessing changes what a seed renders: it is part of the cache key.
DATASET_VERSION = 4  # 4: the camera's area resize by OpenCV (issue 16)
LABELS: tuple[str, ...] = ("class", "position", "velocity", "siren", "condition")

_T_REF_S = (0.6, 2.0)  # episode time of the reference capture; the primary actor is placed at 1.0 s
_JITTER_NS = {"lidar": 50_000_000, "radar": 40_000_000}
_CHUNK = 25  # samples per worker task


@dataclasses.dataclass(frozen=True)
class Sensor:
    """One sensor of a suite: the model input it feeds (a radar also feeds INPUT_mask), its modality
    and where it sits."""

    input: str
    modality: str
    mount: Mount = DEFAULT_MOUNT

    def __post_init__(self) -> None:
        if not self.input:
            raise DatasetError(f"a {self.modality} sensor needs the name of the input it feeds")
        if self.modality not in MODALITIES:
            raise DatasetError(
                f"sensor {self.input!r}: modality must be one of {', '.join(MODALITIES)}, "
                f"got {self.modality!r}"
            )


DEFAULT_SENSORS: tuple[Sensor, ...] = tuple(Sensor(s.name, s.modality) for s in default_contract().inputs)


def _input_spec(sensor: Sensor) -> InputSpec:
    """The input a sensor fills: its modality's input in the shipped model, under the sensor's name."""
    return default_input(sensor.modality, sensor.input)


@functools.lru_cache(maxsize=64)
def _preprocessor(sensor: Sensor) -> InputPreprocessor:
    return preprocessor_for(_input_spec(sensor))


def _input_shapes(sensors: Sequence[Sensor]) -> dict[str, tuple[int, ...]]:
    """Every input array a suite fills, name -> shape; refuses a suite that fills one name twice."""
    shapes: dict[str, tuple[int, ...]] = {}
    for sensor in sensors:
        for name, shape in _input_spec(sensor).tensors.items():
            if name in shapes or name in LABELS:
                raise DatasetError(f"sensor {sensor.input!r}: the suite already has an array named {name!r}")
            shapes[name] = tuple(shape)
    return shapes


INPUTS: tuple[str, ...] = tuple(_input_shapes(DEFAULT_SENSORS))


def trained_streams(config: Config) -> list[StreamConfig]:
    """The streams a model trained for `config` takes: every one but [model] unbound_streams. The world
    renders, and the model package encodes, camera, lidar, radar and audio only: a generic stream a model
    input takes is refused (it crashed `model train` and `model eval`)."""
    unbound = set(config.model.unbound_streams)
    streams = [s for s in config.streams if s.name not in unbound]
    generic = [s.name for s in streams if s.modality not in MODALITIES]
    if generic:
        raise DatasetError(
            f"streams {generic}: a model trained here takes camera, lidar, radar and audio streams only; "
            "list them in [model] unbound_streams to train without them, or bring a model of your own "
            "(docs/MODEL.md)"
        )
    return streams


def sensors_for(config: Config) -> tuple[Sensor, ...]:
    """A config's suite: one sensor per stream a trained model takes (`trained_streams`), feeding the
    stream's `input` (else its slug: camera/front feeds camera_front), mounted where its [streams.sim]
    says."""
    return tuple(
        Sensor(stream.input_name, stream.modality, SimSettings.from_stream(stream).mount)
        for stream in trained_streams(config)
    )


def cache_dir() -> Path:
    """$FUSION_PIPELINE_CACHE, else ~/.cache/fusion-pipeline."""
    return Path(os.environ.get("FUSION_PIPELINE_CACHE") or Path.home() / ".cache" / "fusion-pipeline")


def _shapes(n: int, sensors: Sequence[Sensor]) -> dict[str, tuple[tuple[int, ...], str]]:
    shapes = {name: ((n, *shape), "float32") for name, shape in _input_shapes(sensors).items()}
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


def _capture(world: World, sensor: Sensor, t_ref: int, rng: np.random.Generator) -> np.ndarray:
    """A sensor's raw payload for the reference time: a camera at t_ref, a lidar or radar jittered
    around it (one draw from `rng`), the audio window that ends at t_ref."""
    if sensor.modality == "audio":
        params = _preprocessor(sensor).params  # AudioParams
        return world.audio(t_ref - int(params.window_s * 1e9), params.window_samples, mount=sensor.mount)
    jitter_ns = _JITTER_NS.get(sensor.modality, 0)
    t = t_ref + int(rng.uniform(-1.0, 1.0) * jitter_ns) if jitter_ns else t_ref
    render = {"camera": world.camera, "lidar": world.lidar, "radar": world.radar}[sensor.modality]
    return render(t, sensor.mount)


def render_sample(
    world: World,
    episode: int,
    sensors: Sequence[Sensor] = DEFAULT_SENSORS,
    corruption: Corruption | CorruptionMix | None = None,
) -> dict[str, np.ndarray]:
    """One sample: every sensor captured near a reference time in `episode`, preprocessed, plus labels;
    the sensors of `corruption`'s modality corrupted before their front end (a mix picks the sample's)."""
    if isinstance(corruption, CorruptionMix):
        corruption = corruption.pick(np.random.default_rng([world.seed, episode, 3000]))
    rng = np.random.default_rng([world.seed, episode, 1000])
    t_ref = world.episode_start_ns(episode) + int(rng.uniform(*_T_REF_S) * 1e9)
    out: dict[str, np.ndarray] = {}
    for i, sensor in enumerate(sensors):
        payload = _capture(world, sensor, t_ref, rng)
        if corruption is not None and sensor.modality == corruption.modality:
            # Its own generator: the capture draws above stay those of the clean sample.
            payload = corruption.apply(payload, np.random.default_rng([world.seed, episode, 2000, i]))
        out.update(_preprocessor(sensor)(payload))
    labels = world.labels(t_ref)
    out["class"] = np.int64(labels.class_id)
    out["position"] = np.array(labels.position, np.float32)
    out["velocity"] = np.array([labels.velocity], np.float32)
    out["siren"] = np.array([float(labels.siren)], np.float32)
    out["condition"] = np.int64(CONDITIONS.index(labels.condition))
    return out


def _fill(
    args: tuple[
        int, dict[str, Any], tuple[Sensor, ...], Corruption | CorruptionMix | None, str, int, int, int
    ],
) -> int:
    """Worker: render samples [i0, i1) into the memory-mapped .npy files in `folder`; returns the count."""
    seed, config, sensors, corruption, folder, n, i0, i1 = args
    world = World(seed, WorldConfig(**config))
    arrays = {name: np.load(Path(folder) / f"{name}.npy", mmap_mode="r+") for name in _shapes(n, sensors)}
    for i in range(i0, i1):
        for name, value in render_sample(world, i, sensors, corruption).items():
            arrays[name][i] = value
    for array in arrays.values():
        array.flush()
    return i1 - i0


def _cache_path(
    folder: Path,
    seed: int,
    n_samples: int,
    config: WorldConfig,
    sensors: tuple[Sensor, ...],
    corruption: Corruption | CorruptionMix | None = None,
) -> Path:
    key: dict[str, Any] = dataclasses.asdict(config)
    if sensors != DEFAULT_SENSORS:  # the default suite keeps the names its caches had before suites
        key = {"world": key, "sensors": [dataclasses.asdict(s) for s in sensors]}
    if corruption is not None:  # clean caches keep their names
        key = {"clean": key, "corruption": str(corruption)}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    return folder / f"world-v{DATASET_VERSION}-seed{seed}-n{n_samples}-{digest}.npz"


def _cameras(sensors: Sequence[Sensor]) -> list[str]:
    """The arrays the cache file stores as float16."""
    return [s.input for s in sensors if s.modality == "camera"]


def _load(path: Path, sensors: tuple[Sensor, ...]) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            data = {name: npz[name] for name in npz.files}
    except (OSError, ValueError) as exc:
        raise DatasetError(f"dataset cache {path} is unreadable ({exc}); delete it to regenerate") from exc
    missing = set(_shapes(0, sensors)) - set(data)
    if missing:
        raise DatasetError(f"dataset cache {path} lacks {sorted(missing)}; delete it to regenerate")
    for name in _cameras(sensors):
        data[name] = data[name].astype(np.float32)
    return data


def generate(
    seed: int,
    n_samples: int,
    *,
    sensors: Sequence[Sensor] = DEFAULT_SENSORS,
    config: WorldConfig | None = None,
    cache: bool = True,
    folder: str | Path | None = None,
    workers: int | None = None,
    progress: bool = False,
    corruption: Corruption | CorruptionMix | None = None,
) -> dict[str, np.ndarray]:
    """Render (or load from the cache) `n_samples` model-ready samples of the world with `seed`, as seen
    by the suite `sensors`, with `corruption` applied to the sensors of its modality (render_sample).

    `folder` defaults to cache_dir(); `workers` to the number of CPUs (at most 8). With cache=False
    nothing is read or written there except a temporary scratch folder.
    """
    if n_samples <= 0:
        raise DatasetError(f"n_samples must be positive, got {n_samples}")
    sensors = tuple(sensors)
    if not sensors:
        raise DatasetError("sensors: a suite needs at least one sensor")
    shapes = _shapes(n_samples, sensors)  # refuses a suite that fills one array twice
    config = config or WorldConfig()
    folder = Path(folder) if folder is not None else cache_dir()
    path = _cache_path(folder, seed, n_samples, config, sensors, corruption)
    if cache and path.exists():
        return _load(path, sensors)
    folder.mkdir(parents=True, exist_ok=True)
    workers = max(1, min(workers or os.cpu_count() or 1, 8))
    with tempfile.TemporaryDirectory(dir=folder, prefix="scratch-") as scratch:
        # Workers write straight into shared memory-mapped files: no sample is ever pickled between processes.
        for name, (shape, dtype) in shapes.items():
            npy = Path(scratch) / f"{name}.npy"
            np.lib.format.open_memmap(npy, mode="w+", dtype=dtype, shape=shape).flush()
        tasks = [
            (
                seed,
                dataclasses.asdict(config),
                sensors,
                corruption,
                scratch,
                n_samples,
                i0,
                min(i0 + _CHUNK, n_samples),
            )
            for i0 in range(0, n_samples, _CHUNK)
        ]
        what = f"world seed {seed}" + (f", {corruption}" if corruption else "")
        bar = tqdm(total=n_samples, desc=f"rendering {what}", unit="sample", disable=not progress)
        if workers == 1:
            for task in tasks:
                bar.update(_fill(task))
        else:
            with multiprocessing.get_context("fork").Pool(workers) as pool:
                for done in pool.imap_unordered(_fill, tasks):
                    bar.update(done)
                # Every task done: the workers end on their own; the block's end would signal them
                # (terminate), which a worker that inherited a SIGTERM handler can take as Ctrl-C.
                pool.close()
                pool.join()
        bar.close()
        data = {name: np.load(Path(scratch) / f"{name}.npy") for name in shapes}
    halves = {name: data[name].astype(np.float16) for name in _cameras(sensors)}
    if cache:
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, **{**data, **halves})
        os.replace(tmp, path)  # atomic: a concurrent reader sees the old state or the whole file
    # The cameras as the cache gives them back, so a run that renders trains on the same numbers as a
    # run that loads the cache (before, a first `model train` differed from every later one).
    return {**data, **{name: half.astype(np.float32) for name, half in halves.items()}}
