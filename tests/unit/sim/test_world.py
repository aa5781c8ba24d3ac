"""The synthetic world: determinism, continuity, label semantics and sensor physics by condition."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest

from fusion_pipeline.contract import default_contract
from fusion_pipeline.errors import FusionError
from fusion_pipeline.sim import (
    AUDIO_SAMPLE_RATE,
    CAMERA_FOV_DEG,
    CLASSES,
    CONDITIONS,
    DEFAULT_MOUNT,
    Actor,
    Mount,
    Scene,
    World,
    WorldConfig,
    WorldError,
)

SECOND = 1_000_000_000


def car(x: float, y: float, heading: float = 0.0, speed: float = 0.0, kind: str = "car") -> Actor:
    return Actor(
        kind, x, y, heading, speed, length=4.5, width=1.8, height=1.5, color=(160, 25, 25),
        engine_hz=35.0, siren_period_s=3.0 if kind == "emergency" else 0.0,
    )  # fmt: skip


def pedestrian(x: float, y: float) -> Actor:
    return Actor("pedestrian", x, y, 0.0, 0.0, length=0.5, width=0.5, height=1.8, color=(40, 120, 200))


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


CFG = WorldConfig()


def test_classes_follow_the_model_contract() -> None:
    (logits,) = (out for out in default_contract().outputs if out.kind == "class_logits")
    assert logits.classes == CLASSES


def _digest(arrays: list[np.ndarray]) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(str((a.dtype.str, a.shape)).encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def test_the_default_mount_renders_bitwise_what_the_world_rendered_before_mounts() -> None:
    """The digests were taken from the world before sensors had mounts (commit 2b2475b): recorded logs,
    replayed demo results and cached datasets stay valid. Episodes 0-7 of seed 3 cover every condition."""
    world = World(3)
    stamps = [world.episode_start_ns(k) + 1_300_000_000 + 7 * k for k in range(8)]
    assert {world.episode(k).condition for k in range(8)} == set(CONDITIONS)
    assert _digest([world.camera(t) for t in stamps]) == "2891c6e106b1a16f"
    assert _digest([world.lidar(t) for t in stamps]) == "bd10b28afc7cc9ef"
    assert _digest([world.radar(t) for t in stamps]) == "fe712a8869e71ff8"
    assert _digest([world.audio(t, 3200) for t in stamps]) == "759e70b821e78231"
    t = stamps[4]  # rain: every layer of noise
    np.testing.assert_array_equal(world.camera(t, Mount()), world.camera(t))


def test_same_seed_renders_the_same_world_and_another_seed_does_not() -> None:
    a, b, other = World(5), World(5), World(6)
    t = 3 * SECOND + 123_456_789
    assert a.labels(t) == b.labels(t)
    for sensor in ("camera", "lidar", "radar"):
        np.testing.assert_array_equal(getattr(a, sensor)(t), getattr(b, sensor)(t))
    np.testing.assert_array_equal(a.audio(t, 4000), b.audio(t, 4000))
    assert not np.array_equal(a.camera(t), other.camera(t))
    assert not np.array_equal(a.audio(t, 4000), other.audio(t, 4000))


def test_noise_differs_between_captures_of_one_scene() -> None:
    world = World(1)
    assert not np.array_equal(world.lidar(SECOND), world.lidar(SECOND + 100_000_000))


# At the start; spanning an episode change; at a UNIX-epoch stamp as a live sensor would ask for.
@pytest.mark.parametrize("start", [0, 2 * SECOND - 3000 * 62_500, 1_764_000_000 * SECOND + 62_500])
def test_audio_chunks_join_exactly(start: int) -> None:
    world = World(9, WorldConfig(episode_s=2.0))
    whole = world.audio(start, 8000)
    first = world.audio(start, 3001)
    second = world.audio(start + 3001 * 62_500, 4999)
    np.testing.assert_array_equal(np.concatenate([first, second]), whole)
    as_int16 = world.audio(start, 8000, dtype="int16")
    assert as_int16.dtype == np.int16
    np.testing.assert_allclose(as_int16 / 32767.0, whole, atol=1 / 32767)


def test_siren_sweeps_through_its_band_and_fades_with_distance(monkeypatch: pytest.MonkeyPatch) -> None:
    """A siren's energy sits between 550 and 1350 Hz (950 +- 400) and falls off like 1/distance."""

    def band_share_and_power(x: float) -> tuple[float, float]:
        world = World(0)
        scene = Scene("clear", 0.0, (car(x, 0.0, kind="emergency"),))
        monkeypatch.setattr(world, "episode", lambda k: scene)
        samples = world.audio(0, 3 * AUDIO_SAMPLE_RATE).astype(np.float64)
        spectrum = np.abs(np.fft.rfft(samples)) ** 2
        freqs = np.fft.rfftfreq(len(samples), 1 / AUDIO_SAMPLE_RATE)
        return float(spectrum[(freqs > 550) & (freqs < 1350)].sum() / spectrum.sum()), float(spectrum.sum())

    near_share, near_power = band_share_and_power(10.0)
    far_share, far_power = band_share_and_power(40.0)
    assert near_share > 0.5  # the siren dominates the mix up close
    assert far_share < near_share
    assert near_power > 4 * far_power


def test_primary_actor_is_the_nearest_in_the_corridor() -> None:
    scene = Scene("clear", 0.0, (car(30.0, 0.5), pedestrian(12.0, -1.0), car(8.0, 6.0), car(-6.0, 0.0)))
    labels = scene.labels(0.0, CFG)
    assert labels.class_name == "pedestrian"  # the car at y=6 is beside the corridor, the one at x=-6 behind
    assert labels.position == pytest.approx((12.0, -1.0))
    assert not labels.siren


def test_empty_corridor_is_class_none_and_siren_is_heard_from_anywhere() -> None:
    scene = Scene("clear", 0.0, (car(20.0, 8.0, kind="emergency"), car(80.0, 0.0)))  # beside; beyond 50 m
    labels = scene.labels(0.0, CFG)
    assert labels.class_name == "none"
    assert labels.position == (0.0, 0.0)
    assert labels.siren


def test_radial_velocity_sign_and_value() -> None:
    # The ego drives at 5 m/s; a car ahead at 10 m/s recedes at 5 m/s, a parked one approaches at 5 m/s.
    assert Scene("clear", 5.0, (car(20.0, 0.0, speed=10.0),)).labels(0.0, CFG).velocity == pytest.approx(5.0)
    assert Scene("clear", 5.0, (car(20.0, 0.0),)).labels(0.0, CFG).velocity == pytest.approx(-5.0)


def test_actors_move_continuously() -> None:
    scene = Scene("clear", 3.0, (car(20.0, 0.0, speed=10.0),))
    positions, _ = scene.state(np.array([0.0, 0.5, 1.0]))
    np.testing.assert_allclose(positions[:, 0, 0], [20.0, 23.5, 27.0])  # 7 m/s faster than the ego


def test_lidar_point_count_stays_in_the_specified_range() -> None:
    world = World(2)
    for k in range(12):
        n = len(world.lidar(world.episode_start_ns(k) + SECOND))
        assert 30_000 <= n <= 100_000, (world.episode(k).condition, n)


def test_lidar_returns_lie_on_the_ground_and_on_the_actor() -> None:
    points = Scene("clear", 0.0, (car(15.0, 0.0),)).lidar(0.0, rng())
    assert points.dtype == np.float32 and points.shape[1] == 4
    on_car = (np.abs(points[:, 0] - 15.0) < 2.4) & (np.abs(points[:, 1]) < 1.0)
    assert on_car.sum() > 200
    assert points[on_car, 2].max() == pytest.approx(1.5 - 1.8, abs=0.1)  # car roof, in the lidar frame
    ground = points[~on_car & (points[:, 0] > 0)]
    assert np.median(ground[:, 2]) == pytest.approx(-1.8, abs=0.05)
    # Nothing is seen through the car: the ground right behind it is in its shadow.
    shadow = (points[:, 0] > 17.5) & (points[:, 0] < 25) & (np.abs(points[:, 1]) < 0.3)
    assert shadow.sum() == 0


def test_lidar_sees_cyclists_by_their_reflectors_and_ambulances_by_their_height() -> None:
    cyclist = Actor("cyclist", 12.0, 0.0, 0.0, 0.0, length=1.8, width=0.6, height=1.7, color=(0, 0, 0))
    ped = pedestrian(12.0, 0.0)
    intensity = {}
    for actor in (cyclist, ped):
        points = Scene("clear", 0.0, (actor,)).lidar(0.0, rng())
        above_ground = (np.abs(points[:, 0] - 12.0) < 1.5) & (points[:, 2] > -1.5)
        intensity[actor.kind] = float(np.median(points[above_ground, 3]))
    assert intensity["cyclist"] > 2 * intensity["pedestrian"]
    world = World(8)
    heights = {"car": [], "emergency": []}
    for k in range(300):
        for actor in world.episode(k).actors:
            if actor.kind in heights:
                heights[actor.kind].append(actor.height)
    vans = {kind: np.mean(np.array(h) > 2.2) for kind, h in heights.items()}
    assert 0.35 < vans["emergency"] < 0.65 and vans["car"] < 0.2


def test_radar_measures_the_radial_velocity_of_the_actor() -> None:
    scene = Scene("clear", 0.0, (car(25.0, 0.0, speed=8.0),))
    detections = scene.radar(0.0, rng())
    on_car = np.abs(detections[:, 0] - 25.0) < 3.0
    assert on_car.sum() >= 3
    assert np.median(detections[on_car, 3]) == pytest.approx(8.0, abs=0.5)
    assert np.median(detections[on_car, 4]) > 0  # cars are strong reflectors


def test_camera_shows_the_emergency_light_bar_in_most_frames_but_not_all() -> None:
    scene = Scene("clear", 0.0, (car(15.0, 0.0, kind="emergency"),))
    blue_or_red = []
    for t in np.arange(0.0, 1.0, 1 / 30):
        image = scene.camera(float(t), rng()).astype(int)
        r, g, b = image[..., 0], image[..., 1], image[..., 2]
        blue_or_red.append(bool(((b - r > 150) | (r - g > 170)).any()))
    assert 0.6 < np.mean(blue_or_red) < 1.0
    plain = Scene("clear", 0.0, (car(15.0, 0.0),)).camera(0.0, rng()).astype(int)
    assert not ((plain[..., 2] - plain[..., 0] > 150) | (plain[..., 0] - plain[..., 1] > 170)).any()


def test_conditions_degrade_each_sensor_their_own_way() -> None:
    actors = (car(20.0, 0.0), pedestrian(35.0, 1.0))
    clutter = np.array([[30.0, 6.0], [50.0, -7.0]]), np.array([5.0, 8.0])
    scenes = {c: Scene(c, 4.0, actors, *clutter) for c in CONDITIONS}
    empty = {c: Scene(c, 4.0, (), *clutter) for c in CONDITIONS}
    camera = {c: scenes[c].camera(0.0, rng()).astype(float) for c in CONDITIONS}
    lidar = {c: scenes[c].lidar(0.0, rng()) for c in CONDITIONS}
    radar = {c: scenes[c].radar(0.0, rng()) for c in CONDITIONS}

    # Camera: how strongly the actors stand out from the same view without them.
    actor_pixels = np.abs(camera["clear"] - empty["clear"].camera(0.0, rng())).max(axis=2) > 30
    contrast = {c: np.abs(camera[c] - empty[c].camera(0.0, rng()))[actor_pixels].mean() for c in CONDITIONS}
    assert camera["night"].mean() < 0.4 * camera["clear"].mean()  # darkness
    assert contrast["night"] < 0.5 * contrast["clear"]
    assert contrast["fog"] < 0.5 * contrast["clear"]
    assert contrast["rain"] > 0.5 * contrast["clear"]  # rain adds noise but keeps the actors visible

    def far(points: np.ndarray) -> int:
        return int((np.hypot(points[:, 0], points[:, 1]) > 30).sum())

    assert far(lidar["fog"]) < 0.5 * far(lidar["clear"])  # range-dependent dropout
    assert len(lidar["rain"]) < 0.9 * len(lidar["clear"])
    assert len(lidar["night"]) == pytest.approx(len(lidar["clear"]), rel=0.02)  # lidar needs no light
    assert len(radar["rain"]) > len(radar["clear"])  # spray ghosts
    assert len(radar["night"]) == len(radar["clear"]) and len(radar["fog"]) == len(radar["clear"])


def test_scene_mix_roughly_follows_the_config() -> None:
    world = World(4)
    n = 400
    classes = np.bincount(
        [world.labels(world.episode_start_ns(k) + SECOND).class_id for k in range(n)], minlength=5
    )
    conditions = np.bincount([CONDITIONS.index(world.episode(k).condition) for k in range(n)], minlength=4)
    np.testing.assert_allclose(classes / n, CFG.class_mix, atol=0.07)
    np.testing.assert_allclose(conditions / n, CFG.condition_mix, atol=0.07)
    assert all(len(world.episode(k).actors) <= 3 for k in range(n))


def test_time_before_the_start_and_bad_configs_are_rejected() -> None:
    world = World(0, start_ns=10 * SECOND)
    with pytest.raises(WorldError, match="before the world start"):
        world.camera(SECOND)
    with pytest.raises(FusionError, match="class_mix"):
        WorldConfig(class_mix=(0.5, 0.5, 0.5, 0.0, 0.0))
    with pytest.raises(WorldError, match="dtype"):
        world.audio(10 * SECOND, 10, dtype="float64")
    with pytest.raises(WorldError, match="seed"):
        World(-1)


def test_episodes_change_the_scene_on_schedule() -> None:
    world = World(3, WorldConfig(episode_s=2.0), start_ns=5 * SECOND)
    assert world.locate(7_250_000_000) == (1, 0.25)
    assert world.episode(0).ego_speed != world.episode(1).ego_speed
    assert world.scene is world.episode(0)


# -- mounts -----------------------------------------------------------------------------------------------


def _shows_actor(scene: Scene, mount: Mount) -> bool:
    """Whether the camera's frame differs from the same frame with no actors (same noise)."""
    empty = Scene(scene.condition, scene.ego_speed, ())
    return not np.array_equal(scene.camera(0.0, rng(), mount), empty.camera(0.0, rng(), mount))


def test_a_camera_sees_what_its_yaw_points_at() -> None:
    behind = Scene("clear", 0.0, (car(-15.0, 0.0),))
    left = Scene("clear", 0.0, (car(0.0, 15.0),))
    assert not _shows_actor(behind, DEFAULT_MOUNT)
    assert _shows_actor(behind, Mount(yaw_deg=180.0))
    assert not _shows_actor(left, DEFAULT_MOUNT) and not _shows_actor(left, Mount(yaw_deg=-90.0))
    assert _shows_actor(left, Mount(yaw_deg=90.0))  # counter-clockwise: +90 looks left


def test_a_wider_field_of_view_shows_the_same_actor_smaller() -> None:
    scene = Scene("clear", 0.0, (car(20.0, 0.0),))
    empty = Scene("clear", 0.0, ())

    def width_px(mount: Mount) -> int:
        changed = np.abs(scene.camera(0.0, rng(), mount).astype(int) - empty.camera(0.0, rng(), mount))
        return int(np.ptp(np.nonzero(changed.max(axis=2) > 30)[1]))

    ratio = width_px(Mount(fov_deg=90.0)) / width_px(Mount())
    focal_ratio = math.tan(math.radians(CAMERA_FOV_DEG / 2)) / math.tan(math.radians(45.0))
    assert ratio == pytest.approx(focal_ratio, rel=0.1)


def test_lidar_and_radar_return_points_in_their_own_frame() -> None:
    """A car 15 m to the left of the ego is 15 m ahead of a lidar turned left, and 5 m nearer to one
    mounted 5 m further left; a radar sees it only when turned towards it. The lidar sees the car's
    near end, 2.25 m before its centre."""
    scene = Scene("clear", 0.0, (car(0.0, 15.0, heading=math.pi / 2, speed=4.0),))  # driving away, leftwards

    def near_end(points: np.ndarray) -> np.ndarray:
        above_ground = points[points[:, 2] > -1.5]
        return np.median(above_ground[:, :2], axis=0)

    np.testing.assert_allclose(near_end(scene.lidar(0.0, rng())), (0.0, 12.75), atol=0.5)
    np.testing.assert_allclose(near_end(scene.lidar(0.0, rng(), Mount(yaw_deg=90.0))), (12.75, 0.0), atol=0.5)
    np.testing.assert_allclose(
        near_end(scene.lidar(0.0, rng(), Mount(yaw_deg=90.0, y_m=5.0))), (7.75, 0.0), atol=0.5
    )

    def on_car(detections: np.ndarray) -> np.ndarray:
        return detections[detections[:, 4] > 3.0]  # cars are strong reflectors; clutter-free scene

    assert len(on_car(scene.radar(0.0, rng()))) == 0  # 90 degrees off the radar's axis: outside +-60
    seen = on_car(scene.radar(0.0, rng(), Mount(yaw_deg=90.0)))
    assert len(seen) >= 3
    assert np.median(seen[:, 0]) == pytest.approx(15.0, abs=1.5)
    assert np.median(seen[:, 3]) == pytest.approx(4.0, abs=0.5)  # receding from the radar at 4 m/s


def test_a_microphone_hears_a_siren_louder_from_nearer() -> None:
    world = World(0)
    siren = Scene("clear", 0.0, (car(30.0, 0.0, kind="emergency"),))
    world.episode = lambda k: siren  # type: ignore[method-assign]
    power = {x: float(np.mean(world.audio(0, 8000, mount=Mount(x_m=x)) ** 2)) for x in (0.0, 20.0)}
    assert power[20.0] > 4 * power[0.0]  # 10 m instead of 30 m away


def test_each_mount_has_its_own_noise() -> None:
    """Two sensors with (nearly) the same view do not share noise: neither with the default mount,
    whose noise is the one-sensor world's, nor with each other."""
    world = World(1)
    t = 2 * SECOND
    near_default = [Mount(x_m=1e-6), Mount(x_m=2e-6)]
    lidars = [world.lidar(t, m) for m in (DEFAULT_MOUNT, *near_default)]
    assert len({len(points) for points in lidars}) == 3  # different dropout draws
    mics = [world.audio(t, 1600, mount=m) for m in (DEFAULT_MOUNT, *near_default)]
    assert not np.array_equal(mics[0], mics[1]) and not np.array_equal(mics[1], mics[2])
    np.testing.assert_array_equal(world.lidar(t, Mount(x_m=1e-6)), lidars[1])  # and it is reproducible


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"fov_deg": 180.0}, "fov_deg: a pinhole camera sees between 0 and 180 degrees"),
        ({"fov_deg": 0.0}, "fov_deg: a pinhole camera sees between 0 and 180 degrees"),
        ({"yaw_deg": math.nan}, "yaw_deg: expected a finite number"),
        ({"x_m": math.inf}, "x_m: expected a finite number"),
    ],
)
def test_impossible_mounts_are_refused(fields: dict[str, float], message: str) -> None:
    with pytest.raises(WorldError, match=message):
        Mount(**fields)
