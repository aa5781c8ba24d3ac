"""Degraded sensors: each corruption changes its payload more with each severity, reproducibly; the dataset
renders a corrupted seed with the clean sensors untouched; a simulated driver corrupts what it sends and
refuses a corruption it does not know, naming the key."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pipeline_harness import DEMO_TEXT, add_to_stream

from fusion_pipeline.config import parse_config
from fusion_pipeline.contract import default_input
from fusion_pipeline.preprocess import preprocessor_for
from fusion_pipeline.sim import (
    CORRUPTIONS,
    SEVERITIES,
    Corruption,
    CorruptionError,
    CorruptionMix,
    SensorSchedule,
    SimError,
    SimSettings,
    World,
    generate,
    render,
    render_sample,
)
from fusion_pipeline.sim.corruptions import lidar_beam

START = 1_700_000_000_000_000_000
T_NS = 1_200_000_000  # 1.2 s into episode 0 of World(3): near the primary actor


@pytest.fixture(scope="module")
def payloads() -> dict[str, np.ndarray]:
    world = World(3)
    return {
        "camera": world.camera(T_NS),
        "lidar": world.lidar(T_NS),
        "radar": world.radar(T_NS),
        "audio": world.audio(T_NS - 500_000_000, 8000),
    }


def _features(modality: str, payload: np.ndarray) -> np.ndarray:
    """What the model sees: the payload through the shipped model's front end of its modality."""
    spec = default_input(modality, modality)
    return preprocessor_for(spec)(payload)[modality]


@pytest.mark.parametrize("kind", CORRUPTIONS)
def test_each_kind_degrades_more_with_each_severity_and_is_reproducible(
    kind: str, payloads: dict[str, np.ndarray]
) -> None:
    modality = Corruption(kind).modality
    clean = payloads[modality]
    before = clean.copy()
    distances = []
    for severity in SEVERITIES:
        corruption = Corruption(kind, severity)
        once = corruption.apply(clean, np.random.default_rng(5))
        again = corruption.apply(clean, np.random.default_rng(5))
        np.testing.assert_array_equal(once, again)
        # The payload keeps its format, so the front end takes it as it takes a clean one.
        assert once.dtype == clean.dtype and once.shape[1:] == clean.shape[1:]
        distances.append(float(np.abs(_features(modality, once) - _features(modality, clean)).mean()))
    np.testing.assert_array_equal(clean, before)  # the input payload is left as it is
    assert 0 < distances[0] < distances[1] < distances[2], distances


def test_lidar_beam_dropout_removes_whole_beams(payloads: dict[str, np.ndarray]) -> None:
    points = payloads["lidar"]
    kept = Corruption("lidar_beam_dropout", 2).apply(points, np.random.default_rng(0))
    beams_before, beams_after = set(lidar_beam(points).tolist()), set(lidar_beam(kept).tolist())
    assert beams_after < beams_before
    # Every point of a surviving beam survives.
    survivors = np.isin(lidar_beam(points), list(beams_after))
    assert survivors.sum() == len(kept)


def test_radar_misses_and_ghosts_change_the_detection_count(payloads: dict[str, np.ndarray]) -> None:
    detections = payloads["radar"]
    assert len(Corruption("radar_misses", 3).apply(detections, np.random.default_rng(0))) < len(detections)
    assert (
        len(Corruption("radar_ghosts", 1).apply(detections, np.random.default_rng(0))) == len(detections) + 2
    )


def test_unknown_kinds_and_severities_are_refused() -> None:
    with pytest.raises(CorruptionError, match="'camera_fog' is not one of"):
        Corruption("camera_fog")
    for severity in (0, 4, True):
        with pytest.raises(CorruptionError, match="severity must be 1, 2 or 3"):
            Corruption("camera_blur", severity)
    assert Corruption.parse("lidar_spurious:3") == Corruption("lidar_spurious", 3)
    with pytest.raises(CorruptionError, match="expected KIND:SEVERITY"):
        Corruption.parse("lidar_spurious")


def test_a_corrupted_dataset_keeps_scenes_labels_and_the_other_sensors(tmp_path: Path) -> None:
    corruption = Corruption("radar_ghosts", 3)
    clean = generate(7, 3, folder=tmp_path, workers=1)
    corrupted = generate(7, 3, folder=tmp_path, workers=1, corruption=corruption)
    assert len(list(tmp_path.glob("*.npz"))) == 2  # its own cache file, the clean one keeps its name
    for name in ("class", "position", "velocity", "siren", "condition", "lidar", "audio"):
        np.testing.assert_array_equal(corrupted[name], clean[name])
    assert (corrupted["radar_mask"].sum(axis=1) > clean["radar_mask"].sum(axis=1)).all()
    # The cache holds what render_sample gives, and a second call reads it back.
    sample = render_sample(World(7), 1, corruption=corruption)
    np.testing.assert_array_equal(sample["radar"], corrupted["radar"][1])
    np.testing.assert_array_equal(
        generate(7, 3, folder=tmp_path, corruption=corruption)["radar"], corrupted["radar"]
    )


def _stream(name: str, sim: str):
    return parse_config(add_to_stream(DEMO_TEXT, name, sim)).stream(name)


def test_a_simulated_driver_sends_its_corruption() -> None:
    stream = _stream("camera/front", 'sim = { corruption = "camera_occlusion", severity = 3 }')
    settings = SimSettings.from_stream(stream)
    assert settings.corruption == Corruption("camera_occlusion", 3)
    assert "corruption=camera_occlusion:3" in settings.describe()
    capture = SensorSchedule(stream, settings, START).next()
    world = World(0)
    (image,) = render(world, stream, capture, 0)[0].values()
    clean = world.camera(capture.stamp_ns)
    assert image.shape == clean.shape and not np.array_equal(image, clean)
    np.testing.assert_array_equal(render(world, stream, capture, 0)[0]["image"], image)  # reproducible
    default = SimSettings.from_stream(_stream("camera/front", 'sim = { corruption = "camera_blur" }'))
    assert default.corruption == Corruption("camera_blur", 2)


@pytest.mark.parametrize(
    ("sim", "message"),
    [
        (
            'sim = { corruption = "camera_smudge" }',
            r"camera/front\]\.sim\.corruption: 'camera_smudge' is not",
        ),
        (
            'sim = { corruption = "camera_blur", severity = 5 }',
            r"camera/front\]\.sim\.severity: must be 1, 2",
        ),
        ("sim = { severity = 2 }", r"camera/front\]\.sim\.severity: given without"),
        ('sim = { corruption = "radar_ghosts" }', r"\.sim\.corruption: 'radar_ghosts' corrupts a radar"),
    ],
)
def test_bad_corruption_settings_name_the_key(sim: str, message: str) -> None:
    with pytest.raises(SimError, match=message):
        SimSettings.from_stream(_stream("camera/front", sim))


def test_a_corruption_mix_corrupts_its_share_of_samples(tmp_path: Path) -> None:
    ghosts, misses = Corruption("radar_ghosts", 3), Corruption("radar_misses", 3)
    clean = generate(7, 8, folder=tmp_path, workers=1)
    by_kind = {c: generate(7, 8, folder=tmp_path, workers=1, corruption=c)["radar"] for c in (ghosts, misses)}
    every = generate(7, 8, folder=tmp_path, workers=1, corruption=CorruptionMix((ghosts,), 1.0))
    np.testing.assert_array_equal(every["radar"], by_kind[ghosts])  # one corruption, every sample
    mixed = generate(7, 8, folder=tmp_path, workers=1, corruption=CorruptionMix((ghosts, misses), 0.5))
    picks = [CorruptionMix((ghosts, misses), 0.5).pick(np.random.default_rng([7, i, 3000])) for i in range(8)]
    assert None in picks and set(picks) - {None}  # this seed has clean and corrupted samples
    for i, pick in enumerate(picks):
        expected = clean["radar"][i] if pick is None else by_kind[pick][i]
        np.testing.assert_array_equal(mixed["radar"][i], expected)
    for share in (0.0, 1.5):
        with pytest.raises(CorruptionError, match="share must be in"):
            CorruptionMix((ghosts,), share)
    with pytest.raises(CorruptionError, match="at least one"):
        CorruptionMix((), 0.5)


def test_run_refuses_an_unknown_corruption_before_starting_anything() -> None:
    from fusion_pipeline.cli.run import preflight
    from fusion_pipeline.errors import ConfigError

    config = parse_config(add_to_stream(DEMO_TEXT, "camera/front", 'sim = { corruption = "camera_smear" }'))
    with pytest.raises(ConfigError, match=r"streams\[camera/front\]\.sim\.corruption: 'camera_smear' is not"):
        preflight(config, None)
