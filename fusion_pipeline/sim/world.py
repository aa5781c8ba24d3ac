"""A seeded synthetic driving world that renders consistent cameras, lidars, radars and microphones
from one scene, any number of each.

The world is a pure function of ``(seed, config, t_ns)``: it has no clock and no state beyond caches, so
separate sensor processes built with the same seed and ``start_ns`` agree on every actor at every instant,
and a render at a given stamp is reproducible. Time is cut into episodes of ``config.episode_s``; episode
``k`` covers ``[start_ns + k * episode_ns, start_ns + (k + 1) * episode_ns)`` and has its own scene: the
ego vehicle driving along +x, 0 to 3 actors moving in straight lines, and one weather condition.

Frames. The ego frame has x forward, y left, z up, origin on the ground under the ego's reference point.
Each render takes the sensor's `Mount`: its yaw (counter-clockwise from +x, so 90 looks left), its
position (x_m, y_m) in the ego frame and, for a camera, its horizontal field of view, from which the
focal length follows. Sensors return data in their own frame, as real ones do: the ego frame moved to
the mount's position, turned by its yaw and raised to the modality's height (``CAMERA_HEIGHT_M``,
``LIDAR_HEIGHT_M``, ``RADAR_HEIGHT_M``); a microphone hears from its position. Labels are in the ego
frame. The road, its markings and the ego's headlights belong to the ego frame whichever way a sensor
looks. With the default mount (`DEFAULT_MOUNT`: ahead, at the origin, the camera's ~46 degrees) every
render is bitwise what the world rendered before sensors had mounts; any other mount draws its noise
from its own stream (a stable id of the mount joins the seed), so two sensors never share noise.

Design rule: no single sensor suffices, every pair of sensors nearly does.
The fused model must beat the best single-modality model by 10 accuracy points, and lose at most 8 points
when any one sensor is missing. So each class cue lives in at least two sensors, and each sensor is blind to
something another one sees:

=============  ==================================================  =======================================
sensor         sees                                                blind to / degraded by
=============  ==================================================  =======================================
camera         class by look (colour, shape, wheels, light bar),   night (only headlight range ~30 m and
               position by projection, emergency light bar when    vehicle lights), fog (contrast fades at
               it flashes (90 % of frames)                         ~12 m), rain (noise); a dark light bar
                                                                   looks like a car's roof rack
lidar          geometry: ped (0.5 m) vs cyclist (1.8 m long, and   car vs emergency (a police car is a car;
               retro-reflectors) vs car-like (4-5 m) vs van        a van is an ambulance 4 times in 5),
               (ambulances, some cars), exact position; works      fog (range-dependent dropout and
               at night                                            backscatter), rain (dropout)
radar          radial velocity and rcs: car-like (+10 dBsm) vs     car vs emergency (same rcs; emergency
               cyclist (-1) vs pedestrian (-6), all weather        only tends to be faster), stationary
                                                                   clutter, rain ghosts, coarse angle
audio          siren (any emergency vehicle in the scene), engine  position, so it cannot tell whether the
               rumble of nearby cars                               siren is the primary actor; ped,
                                                                   cyclist and none are all silent
=============  ==================================================  =======================================

Pairs that cover the hard cases: emergency vs car = audio siren or camera light bar (or, partly, lidar
van shape and radar speed); pedestrian vs cyclist = lidar length and reflectors, camera look, or radar
velocity and rcs; far actors at night or in fog = lidar or radar; whether the actor is in the corridor =
camera, lidar or radar. Hence with one sensor missing another still covers each confusion, while alone
each sensor has a whole class pair or a whole condition it cannot resolve.

Class and condition mix (``WorldConfig``): the primary class is drawn with probabilities
none 0.15, car 0.25, pedestrian 0.20, cyclist 0.20, emergency 0.20 — car and emergency together are 45 %,
so a sensor blind to the siren and the light bar (lidar, radar) loses much of the emergency share however
good it is otherwise (the lidar gets the ambulances back, the radar some fast ones). The conditions are
clear 0.30, night 0.25, fog 0.20, rain 0.25, so the camera is badly degraded in 45 % of scenes and the
lidar in 20 % (fog) plus 25 % mildly (rain). Distractor actors (0 to 2 when there is a primary actor,
0 to 3 when not) stand outside the corridor; 5 % of them are emergency vehicles, whose siren the audio
hears while the label is something else.
"""

from __future__ import annotations

import functools
import math
import zlib
from dataclasses import astuple, dataclass, field, replace

import numpy as np

from fusion_pipeline.protocol import NS_PER_S
from fusion_pipeline.sim.errors import WorldError

__all__ = [
    "AUDIO_SAMPLE_RATE",
    "CAMERA_FOV_DEG",
    "CAMERA_HEIGHT_M",
    "CAMERA_SHAPE",
    "CLASSES",
    "CONDITIONS",
    "DEFAULT_MOUNT",
    "LIDAR_BEAMS",
    "LIDAR_ELEVATION_DEG",
    "LIDAR_HEIGHT_M",
    "PLACE_S",
    "RADAR_HEIGHT_M",
    "Actor",
    "Labels",
    "Mount",
    "Scene",
    "World",
    "WorldConfig",
]

#: Class order of the labels; identical to the model contract's.
CLASSES: tuple[str, ...] = ("none", "car", "pedestrian", "cyclist", "emergency")
CONDITIONS: tuple[str, ...] = ("clear", "night", "fog", "rain")
AUDIO_SAMPLE_RATE = 16_000  # the simulated microphones' rate, Hz

CAMERA_SHAPE = (480, 640, 3)
CAMERA_HEIGHT_M = 1.5
CAMERA_FOCAL_PX = 750.0  # the default camera's focal length: a pedestrian at 30 m is 12 px wide
#: The default camera's horizontal field of view, ~46.2 degrees, as its focal length gives it.
CAMERA_FOV_DEG = 2 * math.degrees(math.atan(CAMERA_SHAPE[1] / 2 / CAMERA_FOCAL_PX))
LIDAR_HEIGHT_M = 1.8
RADAR_HEIGHT_M = 0.5

GRAVITY_MS2 = 9.81
#: The simulated IMU: white noise per axis and the road's vibration at full speed (6 m/s).
IMU_ACCEL_NOISE_MS2 = 0.02
IMU_GYRO_NOISE_RADS = 0.002
IMU_BOUNCE_HZ = 12.0
IMU_BOUNCE_MS2 = 0.3
IMU_PITCH_RADS = 0.01

#: Episode time at which the primary actor is placed in the corridor; labels are most balanced near it.
PLACE_S = 1.0
_SAMPLE_NS = NS_PER_S // AUDIO_SAMPLE_RATE  # 62_500 ns: audio sample n sits at start_ns + n * _SAMPLE_NS


@dataclass(frozen=True)
class WorldConfig:
    """Scene statistics. Probabilities are in the order of CLASSES and CONDITIONS."""

    class_mix: tuple[float, ...] = (0.15, 0.25, 0.20, 0.20, 0.20)
    condition_mix: tuple[float, ...] = (0.30, 0.25, 0.20, 0.25)
    episode_s: float = 4.0
    corridor_length_m: float = 50.0
    corridor_half_width_m: float = 2.0
    distractor_emergency_p: float = 0.05

    def __post_init__(self) -> None:
        for name, probs, n in (
            ("class_mix", self.class_mix, len(CLASSES)),
            ("condition_mix", self.condition_mix, len(CONDITIONS)),
        ):
            if len(probs) != n or min(probs) < 0 or not math.isclose(sum(probs), 1.0, abs_tol=1e-6):
                raise WorldError(
                    f"WorldConfig.{name} must be {n} non-negative numbers summing to 1, got {probs}"
                )
        if self.episode_s <= 0 or (self.episode_s * AUDIO_SAMPLE_RATE) % 1:
            raise WorldError(
                f"WorldConfig.episode_s must be a whole number of audio samples > 0, got {self.episode_s}"
            )


@dataclass(frozen=True)
class Mount:
    """Where a sensor sits on the ego and which way it looks; for a camera, also its field of view.

    `yaw_deg` turns the sensor counter-clockwise from the ego's forward axis (+x), so 90 looks left and
    180 looks back; (`x_m`, `y_m`) is its position in the ego frame; its height is the modality's
    (CAMERA_HEIGHT_M, ...). `fov_deg` is a camera's horizontal field of view, from which its focal
    length follows (square pixels). The default is the demo's sensor at the ego's origin looking ahead.
    """

    yaw_deg: float = 0.0
    fov_deg: float = CAMERA_FOV_DEG
    x_m: float = 0.0
    y_m: float = 0.0

    def __post_init__(self) -> None:
        # Messages start with the field's name: SimSettings prefixes them with the config key's path.
        for name in ("yaw_deg", "fov_deg", "x_m", "y_m"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise WorldError(f"{name}: expected a finite number, got {value!r}")
            # Floats, so that yaw 55 and 55.0 are one mount to its noise key and to a dataset's cache key.
            object.__setattr__(self, name, float(value))
        if not 0 < self.fov_deg < 180:
            raise WorldError(f"fov_deg: a pinhole camera sees between 0 and 180 degrees, got {self.fov_deg}")


DEFAULT_MOUNT = Mount()


@dataclass(frozen=True)
class Actor:
    """One road user, moving in a straight line; (x0, y0) is its world-frame position at the episode start."""

    kind: str
    x0: float
    y0: float
    heading: float  # rad, 0 = along +x
    speed: float  # m/s
    length: float
    width: float
    height: float
    color: tuple[int, int, int]
    flash_offset_s: float = 0.0  # emergency light-bar phase
    engine_hz: float = 0.0  # fundamental of the engine rumble; 0 = silent
    siren_period_s: float = 0.0  # wail sweep period; 0 = no siren
    roof_rack: bool = False  # a grey bar on the roof: looks like a dark light bar

    def __post_init__(self) -> None:
        if self.kind not in CLASSES[1:]:
            raise WorldError(f"actor kind must be one of {', '.join(CLASSES[1:])}, got {self.kind!r}")
        if min(self.length, self.width, self.height) <= 0:
            size = f"{self.length}x{self.width}x{self.height}"
            raise WorldError(f"actor {self.kind} needs a positive length x width x height, got {size}")


@dataclass(frozen=True, eq=False)
class Scene:
    """One episode: the weather, the ego speed along +x, the actors and static radar clutter.

    A scene renders itself at an episode time `t_s`; the random generator supplies the per-capture
    noise, so a World makes renders reproducible by seeding it from the stamp.
    """

    condition: str
    ego_speed: float
    actors: tuple[Actor, ...]
    clutter_xy: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)), repr=False)  # world frame, m
    clutter_rcs: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)  # dBsm

    def state(self, t_s: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Actor positions and velocities relative to the ego at episode time t_s.

        Scalar t gives (A, 2) and (A, 2); an array of T times gives (T, A, 2) positions.
        """
        if not self.actors:
            shape = np.shape(t_s) + (0, 2)
            return np.zeros(shape), np.zeros((0, 2))
        p0 = np.array([(a.x0, a.y0) for a in self.actors])
        v = np.array([(a.speed * math.cos(a.heading), a.speed * math.sin(a.heading)) for a in self.actors])
        v_rel = v - (self.ego_speed, 0.0)
        t = np.asarray(t_s, dtype=np.float64)[..., None, None]
        return p0 + v_rel * t, v_rel

    def labels(self, t_s: float, config: WorldConfig) -> Labels:
        """Primary actor: the nearest one whose centre is in the corridor 0 < x < length, |y| < half width."""
        pos, v_rel = self.state(t_s)
        in_corridor = [
            i
            for i, (x, y) in enumerate(pos)
            if 0.0 < x < config.corridor_length_m and abs(y) < config.corridor_half_width_m
        ]
        siren = any(a.siren_period_s > 0 for a in self.actors)
        if not in_corridor:
            return Labels(CLASSES.index("none"), (0.0, 0.0), 0.0, siren, self.condition)
        i = min(in_corridor, key=lambda j: float(np.hypot(*pos[j])))
        v_r = float(pos[i] @ v_rel[i]) / max(float(np.hypot(*pos[i])), 1e-6)
        kind = CLASSES.index(self.actors[i].kind)
        return Labels(kind, (float(pos[i, 0]), float(pos[i, 1])), v_r, siren, self.condition)

    def camera(self, t_s: float, rng: np.random.Generator, mount: Mount = DEFAULT_MOUNT) -> np.ndarray:
        return _render_camera(self, t_s, rng, mount)

    def lidar(self, t_s: float, rng: np.random.Generator, mount: Mount = DEFAULT_MOUNT) -> np.ndarray:
        return _render_lidar(self, t_s, rng, mount)

    def radar(self, t_s: float, rng: np.random.Generator, mount: Mount = DEFAULT_MOUNT) -> np.ndarray:
        return _render_radar(self, t_s, rng, mount)


@dataclass(frozen=True)
class Labels:
    """Ground truth at one instant for the primary actor (nearest in the forward corridor)."""

    class_id: int
    position: tuple[float, float]  # ego frame, m; (0, 0) when class is none
    velocity: float  # radial velocity, m/s, positive = receding
    siren: bool  # a siren sounds anywhere in the scene (what a microphone can know)
    condition: str

    @property
    def class_name(self) -> str:
        return CLASSES[self.class_id]


class World:
    """A timeline of seeded scenes, rendered on demand at any capture stamp.

    >>> world = World(seed=7)
    >>> image = world.camera(1_000_000_000)  # (480, 640, 3) uint8 at t = 1 s
    """

    def __init__(self, seed: int, config: WorldConfig | None = None, start_ns: int = 0) -> None:
        if seed < 0:
            raise WorldError(f"world seed must be non-negative, got {seed}")
        self.seed = seed
        self.config = config or WorldConfig()
        self.start_ns = start_ns
        self.episode_ns = round(self.config.episode_s * 1e9)

    # -- timeline ---------------------------------------------------------------------------------------

    def locate(self, t_ns: int) -> tuple[int, float]:
        """(episode index, seconds since that episode started) for a stamp."""
        dt = int(t_ns) - self.start_ns
        if dt < 0:
            raise WorldError(f"stamp {t_ns} ns is before the world start {self.start_ns} ns")
        k, rem = divmod(dt, self.episode_ns)
        return k, rem / 1e9

    def episode_start_ns(self, k: int) -> int:
        return self.start_ns + k * self.episode_ns

    @property
    def scene(self) -> Scene:
        """The first episode's scene."""
        return self.episode(0)

    @functools.lru_cache(maxsize=64)  # noqa: B019 - a World lives as long as its process; scenes are small
    def episode(self, k: int) -> Scene:
        """The scene of episode k, a pure function of (seed, config, k)."""
        return _sample_scene(np.random.default_rng([self.seed, k, 0]), self.config)

    def _rng(self, k: int, sensor: int, t_ns: int, mount: Mount) -> np.random.Generator:
        return np.random.default_rng([self.seed, k, sensor, int(t_ns) - self.start_ns, *_noise_key(mount)])

    # -- ground truth and sensors -----------------------------------------------------------------------

    def imu(self, t_ns: int, mount: Mount = DEFAULT_MOUNT) -> np.ndarray:
        """One IMU sample (6,) float32 in the sensor frame (its yaw turns x, y): specific force ax, ay, az
        (m/s^2, gravity included: +9.81 on z at rest) and angular rate gx, gy, gz (rad/s).

        The ego drives straight at its episode's constant speed (the speed steps between episodes, which
        an accelerometer cannot show), so the signal is gravity, the road's vibration (a 12 Hz bounce and
        pitch, stronger with speed) and the sensor's white noise, drawn per stamp (reproducible)."""
        k, t = self.locate(t_ns)
        scene = self.episode(k)
        rng = self._rng(k, 5, t_ns, mount)
        bounce = IMU_BOUNCE_MS2 * scene.ego_speed / 6.0 * math.sin(2 * math.pi * IMU_BOUNCE_HZ * t)
        pitch = IMU_PITCH_RADS * scene.ego_speed / 6.0 * math.cos(2 * math.pi * IMU_BOUNCE_HZ * t)
        gx, gy = _turn_to_sensor(mount, np.array([0.0, pitch]))  # the ego's pitch axis is its y
        truth = np.array([0.0, 0.0, GRAVITY_MS2 + bounce, gx, gy, 0.0])
        noise = rng.standard_normal(6) * np.repeat([IMU_ACCEL_NOISE_MS2, IMU_GYRO_NOISE_RADS], 3)
        return (truth + noise).astype(np.float32)

    def labels(self, t_ns: int) -> Labels:
        k, t = self.locate(t_ns)
        return self.episode(k).labels(t, self.config)

    def warm_camera(self, mount: Mount = DEFAULT_MOUNT) -> None:
        """Build the layers a camera's frames share now (its background per condition, noise, rain),
        not on the first frame of each new condition: each takes tens of ms, longer than a camera
        period, and a live driver would send that frame late; its memory then stays flat from the start."""
        for condition in CONDITIONS:
            _background(condition, mount)
        _noise_tile()
        _rain_tile()

    def camera(self, t_ns: int, mount: Mount = DEFAULT_MOUNT) -> np.ndarray:
        """RGB image (480, 640, 3) uint8 seen from CAMERA_HEIGHT_M through a pinhole of the mount's fov."""
        k, t = self.locate(t_ns)
        return self.episode(k).camera(t, self._rng(k, 1, t_ns, mount), mount)

    def lidar(self, t_ns: int, mount: Mount = DEFAULT_MOUNT) -> np.ndarray:
        """Points (N, 4) float32: x, y, z in the lidar frame (m), intensity in [0, 1]."""
        k, t = self.locate(t_ns)
        return self.episode(k).lidar(t, self._rng(k, 2, t_ns, mount), mount)

    def radar(self, t_ns: int, mount: Mount = DEFAULT_MOUNT) -> np.ndarray:
        """Detections (M, 5) float32: x, y, z (radar frame, m), radial velocity (m/s), rcs (dBsm)."""
        k, t = self.locate(t_ns)
        return self.episode(k).radar(t, self._rng(k, 3, t_ns, mount), mount)

    def audio(
        self, t0_ns: int, n_samples: int, dtype: str = "float32", mount: Mount = DEFAULT_MOUNT
    ) -> np.ndarray:
        """Mono samples at AUDIO_SAMPLE_RATE for [t0, t0 + n_samples / rate), as float32 or int16, heard
        at the mount's position (a microphone hears all round: its yaw does not matter).

        Samples sit on a fixed grid (start_ns + n * 62.5 us); t0 is rounded to it. Every sample is a pure
        function of its grid index, so consecutive chunks join seamlessly: rendering [a, b) then [b, c)
        equals rendering [a, c).
        """
        if n_samples < 0:
            raise WorldError(f"audio: n_samples must be >= 0, got {n_samples}")
        if dtype not in ("float32", "int16"):
            raise WorldError(f"audio: dtype must be 'float32' or 'int16', got {dtype!r}")
        self.locate(t0_ns)  # rejects stamps before the start
        n0 = (int(t0_ns) - self.start_ns + _SAMPLE_NS // 2) // _SAMPLE_NS
        idx = np.arange(n0, n0 + n_samples, dtype=np.int64)
        per_episode = self.episode_ns // _SAMPLE_NS
        key = (self.seed, *_noise_key(mount))
        out = _road_noise(key, idx)
        # A chunk may span an episode boundary: render each episode's part with its own scene.
        for k in np.unique(idx // per_episode):
            sel = idx // per_episode == k
            t = (idx[sel] - k * per_episode) / AUDIO_SAMPLE_RATE
            out[sel] = _render_audio(self.episode(int(k)), t, out[sel], key, idx[sel], mount)
        if dtype == "int16":
            return np.clip(np.round(out * 32767.0), -32768, 32767).astype(np.int16)
        return out.astype(np.float32)


# ---------------------------------------------------------------------------------------------------------
# Scene sampling

_CAR_COLORS = ((235, 235, 235), (180, 180, 185), (30, 30, 35), (160, 25, 25), (30, 50, 140), (90, 90, 95))
_EMG_COLORS = ((240, 240, 240), (235, 235, 235), (30, 30, 35))  # white ambulances, dark police: car colours
_SHIRT_COLORS = (
    (200, 40, 40),
    (40, 120, 200),
    (40, 160, 70),
    (220, 180, 40),
    (120, 60, 150),
    (240, 240, 240),
)


def _sample_actor(rng: np.random.Generator, kind: str, x: float, y: float, heading: float) -> Actor:
    u = rng.uniform
    if kind in ("car", "emergency"):
        emergency = kind == "emergency"
        colors = _EMG_COLORS if emergency else _CAR_COLORS
        # Half the emergency vehicles are ambulances with a van body; one car in ten is a van too, so a
        # van shape makes an emergency vehicle likely (to the lidar, say) but not certain.
        van = rng.random() < (0.5 if emergency else 0.1)
        length, width, height = (
            (u(5.2, 6.0), u(1.95, 2.1), u(2.3, 2.7)) if van else (u(3.9, 4.9), u(1.7, 1.95), u(1.4, 1.75))
        )
        return Actor(
            kind,
            x,
            y,
            heading,
            speed=u(8.0, 18.0) if emergency else u(2.0, 14.0),
            length=length,
            width=width,
            height=height,
            color=colors[rng.integers(len(colors))],
            flash_offset_s=u(0.0, 1.0) if emergency else 0.0,
            engine_hz=u(28.0, 45.0),
            siren_period_s=u(2.0, 4.0) if emergency else 0.0,
            roof_rack=bool(rng.random() < 0.3) and not emergency,
        )
    shirt = _SHIRT_COLORS[rng.integers(len(_SHIRT_COLORS))]
    if kind == "pedestrian":
        size = u(0.4, 0.6)
        return Actor(kind, x, y, heading, u(0.5, 1.8), size, size, u(1.55, 1.95), shirt)
    return Actor(kind, x, y, heading, u(3.0, 7.0), u(1.6, 1.9), u(0.5, 0.7), u(1.6, 1.9), shirt)


def _primary_heading(rng: np.random.Generator, kind: str, y: float) -> float:
    """Heading of the primary actor; actors that cross the lane start on the side they walk away from."""
    inward = -1.0 if y > 0 else 1.0
    if kind == "pedestrian" and rng.random() < 0.6:
        return float(inward * math.pi / 2 + rng.normal(0, 0.15))  # crossing
    if kind == "cyclist" and rng.random() < 0.3:
        return float(inward * rng.uniform(0.15, 0.5))  # changing lane
    if kind == "pedestrian" and rng.random() < 0.5:
        return float(math.pi + rng.normal(0, 0.1))  # walking towards the ego
    return float(rng.normal(0, 0.05))


def _sample_scene(rng: np.random.Generator, cfg: WorldConfig) -> Scene:
    condition = CONDITIONS[rng.choice(len(CONDITIONS), p=cfg.condition_mix)]
    ego_speed = float(rng.uniform(0.0, 6.0))
    primary = CLASSES[rng.choice(len(CLASSES), p=cfg.class_mix)]
    actors: list[Actor] = []
    if primary != "none":
        # Placed in the corridor at t = PLACE_S, then moved back along its track to the episode start.
        x = rng.uniform(6.0, 40.0)
        y = rng.uniform(-0.75, 0.75) * cfg.corridor_half_width_m
        a = _sample_actor(rng, primary, x, y, _primary_heading(rng, primary, y))
        dx = (a.speed * math.cos(a.heading) - ego_speed) * PLACE_S
        actors.append(replace(a, x0=x - dx, y0=y - a.speed * math.sin(a.heading) * PLACE_S))
    for _ in range(rng.integers(0, 4 - len(actors))):
        # Distractors stand beside the corridor (pavements, other lanes) and move along the road.
        p = (0.45, 0.25, 0.30 - cfg.distractor_emergency_p, cfg.distractor_emergency_p)
        kind = ("car", "pedestrian", "cyclist", "emergency")[rng.choice(4, p=p)]
        side = rng.choice((-1.0, 1.0))
        lateral = rng.uniform(3.5, 6.0) if kind in ("car", "emergency") else rng.uniform(4.5, 12.0)
        heading = math.pi if (kind in ("car", "emergency") and side > 0) else 0.0
        heading = heading + rng.choice((0.0, math.pi)) * (kind == "pedestrian") + rng.normal(0, 0.05)
        actors.append(_sample_actor(rng, kind, rng.uniform(-10.0, 70.0), side * lateral, heading))
    n_clutter = int(rng.integers(6, 15))
    clutter_x = rng.uniform(-20.0, 120.0, n_clutter)
    # Guard-rail posts and signs beside the road, plus the odd manhole cover in the lane.
    in_lane = rng.random(n_clutter) < 0.15
    clutter_y = np.where(
        in_lane,
        rng.uniform(-1.5, 1.5, n_clutter),
        rng.choice((-1.0, 1.0), n_clutter) * rng.uniform(4.0, 15.0, n_clutter),
    )
    clutter_rcs = np.where(in_lane, rng.uniform(-20.0, -10.0, n_clutter), rng.uniform(-8.0, 18.0, n_clutter))
    return Scene(condition, ego_speed, tuple(actors), np.stack([clutter_x, clutter_y], axis=1), clutter_rcs)


def _box_corners(a: Actor, p: np.ndarray) -> np.ndarray:
    """(8, 3) corners of an actor's box in the ego frame, centred at ego-frame position p."""
    c, s = math.cos(a.heading), math.sin(a.heading)
    dx = np.array([1, 1, -1, -1, 1, 1, -1, -1]) * a.length / 2
    dy = np.array([1, -1, 1, -1, 1, -1, 1, -1]) * a.width / 2
    z = np.array([0, 0, 0, 0, 1, 1, 1, 1]) * a.height
    return np.stack([p[0] + c * dx - s * dy, p[1] + s * dx + c * dy, z], axis=1)


# ---------------------------------------------------------------------------------------------------------
# Mounts: the scene in a sensor's frame (turned by -yaw about the mount's position)


def _noise_key(mount: Mount) -> tuple[int, ...]:
    """Extra seed words for a sensor's noise: none for the default mount, so its renders stay those of
    the one-sensor-per-modality world, and a stable id of any other, so two sensors never share noise."""
    if mount == DEFAULT_MOUNT:
        return ()
    return (zlib.crc32(repr(astuple(mount)).encode()) or 1,)  # a trailing 0 word seeds like no word at all


def _yaw(mount: Mount) -> tuple[float, float]:
    yaw = math.radians(mount.yaw_deg)
    return math.cos(yaw), math.sin(yaw)


def _turn_to_sensor(mount: Mount, xy: np.ndarray) -> np.ndarray:
    """Ego-frame vectors (..., 2) (velocities, offsets) in the sensor's axes."""
    c, s = _yaw(mount)
    return np.stack([c * xy[..., 0] + s * xy[..., 1], c * xy[..., 1] - s * xy[..., 0]], axis=-1)


def _to_sensor(mount: Mount, xy: np.ndarray) -> np.ndarray:
    """Ego-frame points (..., 2) in the sensor's frame."""
    return _turn_to_sensor(mount, xy - (mount.x_m, mount.y_m))


def _to_ego(mount: Mount, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sensor-frame coordinates back in the ego frame (ground markings and headlights are the ego's)."""
    c, s = _yaw(mount)
    return mount.x_m + c * x - s * y, mount.y_m + s * x + c * y


def _focal_px(mount: Mount) -> float:
    """A camera's focal length from its horizontal field of view; rounded to a micropixel so that the
    default fov gives exactly CAMERA_FOCAL_PX."""
    return round(CAMERA_SHAPE[1] / 2 / math.tan(math.radians(mount.fov_deg) / 2), 6)


def _sensor_view(scene: Scene, t: float, mount: Mount) -> tuple[tuple[Actor, ...], np.ndarray, np.ndarray]:
    """The actors as a sensor sees them at t: headings from its axis, positions and velocities relative
    to the ego (A, 2), all in its frame."""
    pos, v_rel = scene.state(t)
    yaw = math.radians(mount.yaw_deg)
    actors = tuple(replace(a, heading=a.heading - yaw) for a in scene.actors)
    return actors, _to_sensor(mount, pos), _turn_to_sensor(mount, v_rel)


# ---------------------------------------------------------------------------------------------------------
# Camera

_FOG_RGB = np.array([190.0, 192.0, 196.0])
_NOISE_SIGMA = {"clear": 3.0, "night": 9.0, "fog": 4.0, "rain": 8.0}
_FOG_VIS_M = 12.0
_HEADLIGHT_M = 30.0


@functools.lru_cache(maxsize=8 * len(CONDITIONS))  # a driver has one camera; a dataset a suite of them
def _background(condition: str, mount: Mount) -> np.ndarray:
    """Sky, road and lane markings seen from a camera's mount, lit for the condition; (H, W, 3) float32."""
    h, w, _ = CAMERA_SHAPE
    f = _focal_px(mount)
    v, u = np.mgrid[0:h, 0:w].astype(np.float32)
    cy, cx = h / 2, w / 2
    sky = np.array([120.0, 165.0, 220.0]) + (v[..., None] / cy) * np.array([60.0, 45.0, 20.0])
    img = np.where(v[..., None] < cy, sky, np.array([95.0, 95.0, 98.0]))
    # Ground point (depth, lateral, 0) in the camera frame projects to v = cy + f h / depth,
    # u = cx - f lateral / depth; the road (x, y) lies in the ego frame.
    below = v > cy + 1
    depth = np.where(below, f * CAMERA_HEIGHT_M / np.maximum(v - cy, 1e-3), 1e6)
    x, y = _to_ego(mount, depth, (cx - u) * depth / f)
    verge = below & (np.abs(y) > 5.0)
    img[verge] = (70.0, 110.0, 60.0)
    marking = below & (np.abs(np.abs(y) - 1.9) < 0.08) & ((x % 6.0) < 3.0)
    img[marking] = (225.0, 225.0, 215.0)
    if condition == "night":
        lit = below & (x < _HEADLIGHT_M) & _in_headlights(x, y)
        img = img * np.where(lit, 0.15 + 0.7 * (1 - x / _HEADLIGHT_M), 0.06)[..., None]
    elif condition == "fog":
        alpha = np.where(below, np.exp(-depth / _FOG_VIS_M), 0.0)[..., None]
        img = alpha * img + (1 - alpha) * _FOG_RGB
    elif condition == "rain":
        img = img * 0.75
    return img.astype(np.float32)


@functools.lru_cache(maxsize=1)
def _noise_tile() -> np.ndarray:
    """Unit-variance Gaussian noise, a margin larger than a frame, cut at a random offset per frame."""
    h, w, c = CAMERA_SHAPE
    return np.random.default_rng(12345).standard_normal((h + 64, w + 64, c)).astype(np.float32)


@functools.lru_cache(maxsize=1)
def _rain_tile() -> np.ndarray:
    """Sparse bright slanted streaks, as an additive (H+64, W+64, 1) layer."""
    h, w, _ = CAMERA_SHAPE
    rng = np.random.default_rng(54321)
    tile = np.zeros((h + 64, w + 64), np.float32)
    starts = rng.integers(0, [h + 64 - 20, w + 64 - 8], size=(900, 2))
    for i in range(20):  # each streak is 20 px long, drifting 1 px right every 3 rows
        tile[starts[:, 0] + i, starts[:, 1] + i // 3] = 35.0
    return tile[..., None]


def _in_headlights(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Whether ego-frame points lie in the ego's headlight beam, whichever way the camera looks."""
    return (x > 0) & (np.abs(y) < 0.4 * x + 1.5)


def _visibility(condition: str, d: float, ahead: bool) -> tuple[float, float]:
    """(brightness factor, fog alpha) for an actor at distance d: how much of its own colour survives."""
    if condition == "night":
        return (0.9 * max(0.0, 1 - d / _HEADLIGHT_M) if ahead else 0.0) + 0.05, 1.0
    if condition == "fog":
        return 1.0, math.exp(-d / _FOG_VIS_M)
    if condition == "rain":
        return 0.8, math.exp(-d / 80.0)
    return 1.0, 1.0


def _render_camera(scene: Scene, t: float, rng: np.random.Generator, mount: Mount) -> np.ndarray:
    img = _background(scene.condition, mount).copy()
    h, w, _ = CAMERA_SHAPE
    f = _focal_px(mount)
    ego_pos, _ = scene.state(t)
    actors, pos, _ = _sensor_view(scene, t, mount)
    order = np.argsort(-np.hypot(pos[:, 0], pos[:, 1])) if len(pos) else []  # far to near
    for i in order:
        a, p = actors[i], pos[i]
        corners = _box_corners(a, p)
        if corners[:, 0].min() < 1.0:
            continue  # beside or behind the camera
        u = w / 2 - f * corners[:, 1] / corners[:, 0]
        v = h / 2 - f * (corners[:, 2] - CAMERA_HEIGHT_M) / corners[:, 0]
        box = (v.min(), v.max(), u.min(), u.max())
        d = float(np.hypot(*p))
        gain, alpha = _visibility(scene.condition, d, ahead=bool(_in_headlights(*ego_pos[i])))
        fog = _fog(scene)
        for rect, rgb in _parts(a, t):
            _fill(img, box, rect, alpha * gain * np.asarray(rgb, np.float32) + (1 - alpha) * fog)
        glow = math.exp(-d / (2.5 * _FOG_VIS_M)) if scene.condition == "fog" else 1.0
        for rect, rgb, opacity in _lights(a, t, scene.condition, p):
            _fill(img, box, rect, glow * np.asarray(rgb, np.float32) + (1 - glow) * fog, opacity)
    oy, ox = rng.integers(0, 64, size=2)
    img += _NOISE_SIGMA[scene.condition] * _noise_tile()[oy : oy + h, ox : ox + w]
    if scene.condition == "rain":
        ry, rx = rng.integers(0, 64, size=2)
        img += _rain_tile()[ry : ry + h, rx : rx + w]
    return np.clip(img, 0, 255).astype(np.uint8)


def _fog(scene: Scene) -> np.ndarray:
    return _FOG_RGB if scene.condition == "fog" else np.zeros(3, np.float32)


def _fill(
    img: np.ndarray,
    box: tuple[float, ...],
    part: tuple[float, float, float, float],
    rgb: np.ndarray,
    opacity: float = 1.0,
) -> None:
    """Paint a sub-rectangle given as fractions (rows r0..r1, cols c0..c1) of the actor's image box."""
    v0, v1, u0, u1 = box
    r0, r1, c0, c1 = part
    h, w, _ = img.shape
    top, bottom = int(max(0, v0 + r0 * (v1 - v0))), int(min(h, math.ceil(v0 + r1 * (v1 - v0))))
    left, right = int(max(0, u0 + c0 * (u1 - u0))), int(min(w, math.ceil(u0 + c1 * (u1 - u0))))
    if top < bottom and left < right:
        region = img[top:bottom, left:right]
        region[...] = rgb if opacity == 1.0 else opacity * rgb + (1 - opacity) * region


_Part = tuple[tuple[float, float, float, float], tuple[int, int, int]]
_Lamp = tuple[tuple[float, float, float, float], tuple[int, int, int], float]  # rect, colour, opacity


def _parts(a: Actor, t: float) -> list[_Part]:
    """The actor's look as coloured rectangles in box fractions, painted in order."""
    if a.kind in ("car", "emergency"):
        parts: list[_Part] = [
            ((0.35, 0.88, 0.0, 1.0), a.color),  # body
            ((0.05, 0.38, 0.15, 0.85), tuple(int(0.5 * c) + 25 for c in a.color)),  # cabin, tinted glass
            ((0.12, 0.36, 0.22, 0.78), (45, 55, 70)),  # windows
            ((0.85, 1.0, 0.08, 0.3), (20, 20, 20)),  # wheels
            ((0.85, 1.0, 0.7, 0.92), (20, 20, 20)),
        ]
        if a.roof_rack or a.kind == "emergency":
            parts.append(((0.0, 0.07, 0.3, 0.7), (85, 85, 90)))  # roof rack, or the light bar housing
        return parts
    if a.kind == "pedestrian":
        return [
            ((0.0, 0.13, 0.3, 0.7), (224, 172, 105)),  # head
            ((0.13, 0.55, 0.1, 0.9), a.color),  # torso
            ((0.55, 1.0, 0.2, 0.8), (40, 40, 60)),  # legs
        ]
    return [  # cyclist: rider on a bike, wheels at the ends of the box
        ((0.0, 0.12, 0.35, 0.65), (250, 200, 0)),  # helmet
        ((0.12, 0.5, 0.3, 0.7), a.color),  # torso
        ((0.5, 0.62, 0.15, 0.85), (140, 140, 150)),  # frame
        ((0.6, 1.0, 0.0, 0.35), (15, 15, 15)),  # wheels
        ((0.6, 1.0, 0.65, 1.0), (15, 15, 15)),
    ]


_FLASH_PERIOD_S = 0.5


def _lights(a: Actor, t: float, condition: str, p: np.ndarray) -> list[_Lamp]:
    """Emissive parts, which do not fade with the dark: lamps at night and in murk; the flashing light bar.

    Each lamp comes with a halo (a wide, half-transparent rectangle) so that it survives the down-scaling
    to the model's 96x128 input as a coloured smudge, the way a real flashing lamp blooms in a camera.
    """
    lamps: list[_Lamp] = []
    if a.kind in ("car", "emergency") and condition in ("night", "fog", "rain"):
        # Seen from behind: red tail lamps; oncoming: white head lamps.
        toward = math.cos(a.heading) * p[0] < 0
        lamp = (255, 250, 220) if toward else (230, 20, 20)
        lamps += [((0.45, 0.6, 0.02, 0.16), lamp, 1.0), ((0.45, 0.6, 0.84, 0.98), lamp, 1.0)]
    if a.kind == "emergency":
        phase = ((t + a.flash_offset_s) % _FLASH_PERIOD_S) / _FLASH_PERIOD_S
        # Red for 45 % of the cycle, blue for 45 %, dark in between: 90 % of frames show a lamp.
        if phase < 0.45:
            rect, rgb = (0.0, 0.1, 0.2, 0.5), (255, 30, 30)
        elif 0.5 <= phase < 0.95:
            rect, rgb = (0.0, 0.1, 0.5, 0.8), (40, 80, 255)
        else:
            return lamps
        halo = (rect[0] - 0.3, rect[1] + 0.25, rect[2] - 0.25, rect[3] + 0.25)
        lamps += [(halo, rgb, 0.45), (rect, rgb, 1.0)]
    return lamps


# ---------------------------------------------------------------------------------------------------------
# Lidar: 64 beams from -25 to +3 degrees, 1024 azimuth steps, 100 m range

#: The lidar's beams (elevation rings), evenly spaced over LIDAR_ELEVATION_DEG; sim/corruptions.py drops
#: whole beams by these.
LIDAR_BEAMS = 64
LIDAR_ELEVATION_DEG = (-25.0, 3.0)
_LIDAR_AZ = 1024
_LIDAR_RANGE_M = 100.0
_LIDAR_REFLECT = {"car": 0.45, "emergency": 0.45, "pedestrian": 0.15, "cyclist": 0.9}  # bikes: reflectors
_LIDAR_NOISE_M = {"clear": 0.02, "night": 0.02, "fog": 0.05, "rain": 0.05}


@functools.lru_cache(maxsize=1)
def _lidar_rays() -> np.ndarray:
    """(AZ, BEAMS, 3) unit ray directions, azimuth-major so an actor's rays are a contiguous azimuth slice."""
    az = np.linspace(-math.pi, math.pi, _LIDAR_AZ, endpoint=False)
    el = np.radians(np.linspace(*LIDAR_ELEVATION_DEG, LIDAR_BEAMS))
    ce = np.cos(el)
    return np.stack(
        np.broadcast_arrays(np.cos(az)[:, None] * ce, np.sin(az)[:, None] * ce, np.sin(el)[None, :]), axis=-1
    ).astype(np.float32)


def _render_lidar(scene: Scene, t: float, rng: np.random.Generator, mount: Mount) -> np.ndarray:
    rays = _lidar_rays()
    n_az, n_el, _ = rays.shape
    # Ground: z = -LIDAR_HEIGHT_M in the lidar frame.
    dz = rays[..., 2]
    rng_m = np.where(dz < 0, LIDAR_HEIGHT_M / np.maximum(-dz, 1e-6), np.inf).astype(np.float32)
    refl = np.full((n_az, n_el), 0.1, np.float32)
    actors, pos, _ = _sensor_view(scene, t, mount)
    for a, p in zip(actors, pos, strict=True):
        idx = _lidar_azimuth_slice(_box_corners(a, p), n_az)
        hit = _ray_box(rays[idx], a, p)
        ranges, reflectivity = rng_m[idx], refl[idx]  # fancy indexing copies: write back below
        closer = hit < ranges
        ranges[closer] = hit[closer]
        reflectivity[closer] = _LIDAR_REFLECT[a.kind]
        rng_m[idx], refl[idx] = ranges, reflectivity
    keep = rng_m <= _LIDAR_RANGE_M
    if scene.condition == "fog":
        keep &= rng.random(keep.shape, dtype=np.float32) < np.exp(-rng_m / 65.0)
    elif scene.condition == "rain":
        keep &= rng.random(keep.shape, dtype=np.float32) < 0.75
    else:
        keep &= rng.random(keep.shape, dtype=np.float32) < 0.98
    r = rng_m[keep]
    r = r + _LIDAR_NOISE_M[scene.condition] * rng.standard_normal(r.shape, dtype=np.float32)
    xyz = rays[keep] * r[:, None]
    intensity = np.minimum(refl[keep] * rng.uniform(0.8, 1.2, r.shape).astype(np.float32), 1.0)
    # Lane markings (the ego's lane, y = +-1.9 m) are retro-reflective.
    ground = np.abs(xyz[:, 2] + LIDAR_HEIGHT_M) < 0.2
    _, y_ego = _to_ego(mount, xyz[:, 0], xyz[:, 1])
    marking = ground & (np.abs(np.abs(y_ego) - 1.9) < 0.1)
    intensity[marking] = 0.6
    points = np.concatenate([xyz, intensity[:, None]], axis=1)
    if scene.condition in ("fog", "rain"):
        # Backscatter from droplets: weak returns a few metres from the sensor.
        n = 3000 if scene.condition == "fog" else 800
        d = rng.standard_normal((n, 3)).astype(np.float32)
        d[:, 2] = np.abs(d[:, 2]) * 0.3 - 0.1
        d *= rng.uniform(1.0, 6.0, (n, 1)).astype(np.float32) / np.linalg.norm(d, axis=1, keepdims=True)
        noise = np.concatenate([d, rng.uniform(0.0, 0.08, (n, 1)).astype(np.float32)], axis=1)
        points = np.concatenate([points, noise])
    return points.astype(np.float32)


def _lidar_azimuth_slice(corners: np.ndarray, n_az: int) -> np.ndarray:
    """Azimuth indices of the rays that can hit a box: the interval its corners span, plus a margin.

    Only these rays go through the slab test, so an actor costs in proportion to its angular size.
    """
    az = np.arctan2(corners[:, 1], corners[:, 0])
    lo, hi = az.min(), az.max()
    if hi - lo > math.pi:  # straddles the +-pi seam behind the ego: take the short way round
        lo, hi = az[az > 0].min(), az[az < 0].max() + 2 * math.pi
    i0 = math.floor((lo + math.pi) / (2 * math.pi) * n_az) - 1
    i1 = math.ceil((hi + math.pi) / (2 * math.pi) * n_az) + 2
    return np.arange(i0, i1) % n_az


def _ray_box(rays: np.ndarray, a: Actor, p: np.ndarray) -> np.ndarray:
    """Slab test: distance along each ray (from the lidar origin) to the actor's box, inf for a miss."""
    c, s = math.cos(a.heading), math.sin(a.heading)
    # Box frame: centre at the origin, axes along the actor's heading.
    o = np.array([-p[0], -p[1], LIDAR_HEIGHT_M - a.height / 2], np.float32)
    o = np.array([c * o[0] + s * o[1], -s * o[0] + c * o[1], o[2]], np.float32)
    d = np.stack(
        [c * rays[..., 0] + s * rays[..., 1], -s * rays[..., 0] + c * rays[..., 1], rays[..., 2]], -1
    )
    d = np.where(d == 0, np.float32(1e-9), d)  # a ray parallel to a slab never crosses it
    half = np.array([a.length / 2, a.width / 2, a.height / 2], np.float32)
    t1 = (-half - o) / d
    t2 = (half - o) / d
    t_near = np.minimum(t1, t2).max(axis=-1)
    t_far = np.maximum(t1, t2).min(axis=-1)
    return np.where((t_far >= t_near) & (t_far > 0), np.maximum(t_near, 0), np.inf).astype(np.float32)


# ---------------------------------------------------------------------------------------------------------
# Radar: +-60 degrees, 100 m

_RADAR_FOV = math.radians(60.0)
_RADAR_RANGE_M = 100.0
_RADAR_RCS = {"car": 10.0, "emergency": 10.0, "pedestrian": -6.0, "cyclist": -1.0}
_RADAR_POINTS = {"car": (3, 8), "emergency": (3, 8), "pedestrian": (1, 2), "cyclist": (1, 3)}
_MICRO_DOPPLER = {"car": 0.1, "emergency": 0.1, "pedestrian": 0.8, "cyclist": 1.0}  # limbs, wheels


def _render_radar(scene: Scene, t: float, rng: np.random.Generator, mount: Mount) -> np.ndarray:
    actors, pos, v_rel = _sensor_view(scene, t, mount)
    xs, vs, rcs = [], [], []
    for a, p, v in zip(actors, pos, v_rel, strict=True):
        r = float(np.hypot(*p))
        p_detect = 0.97 if a.kind in ("car", "emergency") else 0.96 - r / 400.0
        if r > _RADAR_RANGE_M or abs(math.atan2(p[1], p[0])) > _RADAR_FOV or rng.random() > p_detect:
            continue
        lo, hi = _RADAR_POINTS[a.kind]
        n = int(rng.integers(lo, hi + 1))
        corners = _box_corners(a, p)
        # Scatterers spread over the box; velocity is the box's radial velocity plus micro-Doppler.
        w = rng.random((n, 8))
        pts = (w / w.sum(1, keepdims=True)) @ corners
        xs.append(pts)
        v_r = (pts[:, :2] @ v) / np.maximum(np.hypot(pts[:, 0], pts[:, 1]), 1e-3)
        vs.append(v_r + _MICRO_DOPPLER[a.kind] * rng.standard_normal(n))
        rcs.append(_RADAR_RCS[a.kind] + 4.0 * rng.standard_normal(n))
    # Static scatterers: they move at minus the ego speed.
    cxy = _to_sensor(mount, scene.clutter_xy - (scene.ego_speed * t, 0.0))
    v_static = _turn_to_sensor(mount, np.array([-scene.ego_speed, 0.0]))
    seen = rng.random(len(cxy)) < 0.7
    cxy, c_rcs = cxy[seen], scene.clutter_rcs[seen]
    if scene.condition == "rain":  # ghost detections from spray in front of the radar
        n = int(rng.integers(4, 12))
        cxy = np.concatenate([cxy, np.stack([rng.uniform(2, 40, n), rng.uniform(-8, 8, n)], 1)])
        c_rcs = np.concatenate([c_rcs, rng.uniform(-20.0, -5.0, n)])
    xs.append(np.concatenate([cxy, rng.uniform(0.0, 1.0, (len(cxy), 1))], axis=1))
    v_radial = cxy[:, 0] * v_static[0] + cxy[:, 1] * v_static[1]
    vs.append(v_radial / np.maximum(np.hypot(cxy[:, 0], cxy[:, 1]), 1e-3))
    rcs.append(c_rcs + 2.0 * rng.standard_normal(len(cxy)))
    xyz, v_r, rcs_db = np.concatenate(xs), np.concatenate(vs), np.concatenate(rcs)
    # Measurement noise in polar coordinates: range 0.15 m, azimuth 1 degree; velocity 0.1 m/s.
    r = np.hypot(xyz[:, 0], xyz[:, 1]) + 0.15 * rng.standard_normal(len(xyz))
    az = np.arctan2(xyz[:, 1], xyz[:, 0]) + math.radians(1.0) * rng.standard_normal(len(xyz))
    ok = (r > 0.5) & (r < _RADAR_RANGE_M) & (np.abs(az) < _RADAR_FOV)
    out = np.stack(
        [
            r * np.cos(az),
            r * np.sin(az),
            xyz[:, 2] - RADAR_HEIGHT_M,
            v_r + 0.1 * rng.standard_normal(len(xyz)),
            rcs_db,
        ],
        axis=1,
    )[ok]
    return out[rng.permutation(len(out))].astype(np.float32)  # real radars list detections in no useful order


# ---------------------------------------------------------------------------------------------------------
# Audio: every sample a pure function of its global index, so chunks join exactly

_NOISE_BLOCK = 4096
_ROAD_TAPS = 16  # moving-average low-pass: road rumble is mostly low-frequency


def _white(key: tuple[int, ...], stream: int, idx: np.ndarray) -> np.ndarray:
    """Unit white noise at global sample indices (contiguous), from per-block generators seeded with
    `key` (the world's seed, then the microphone's noise key)."""
    blocks = np.arange(idx[0] // _NOISE_BLOCK, idx[-1] // _NOISE_BLOCK + 1) if len(idx) else np.arange(0)
    noise = (
        np.concatenate(
            [np.random.default_rng([*key, stream, int(b)]).standard_normal(_NOISE_BLOCK) for b in blocks]
        )
        if len(blocks)
        else np.zeros(0)
    )
    return noise[idx - blocks[0] * _NOISE_BLOCK] if len(idx) else noise


def _road_noise(key: tuple[int, ...], idx: np.ndarray) -> np.ndarray:
    """Low-passed noise shared by all scenes (its level is set per scene in _render_audio)."""
    if not len(idx):
        return np.zeros(0)
    ext = np.arange(idx[0] - _ROAD_TAPS + 1, idx[-1] + 1)
    white = _white(key, 7, np.maximum(ext, 0))
    return np.convolve(white, np.full(_ROAD_TAPS, 1 / math.sqrt(_ROAD_TAPS)), mode="valid")


def _render_audio(
    scene: Scene, t: np.ndarray, road: np.ndarray, key: tuple[int, ...], idx: np.ndarray, mount: Mount
) -> np.ndarray:
    """Mix for one episode: road noise scaled by ego speed, rain hiss, engines and sirens by their
    distance from the microphone."""
    out = (0.01 + 0.004 * scene.ego_speed) * road
    if scene.condition == "rain":
        out = out + 0.03 * _white(key, 8, idx)
    if not scene.actors:
        return out
    pos, _ = scene.state(t)  # (T, A, 2)
    dist = np.maximum(np.hypot(pos[..., 0] - mount.x_m, pos[..., 1] - mount.y_m), 3.0)
    for i, a in enumerate(scene.actors):
        gain = 1.0 / dist[:, i]
        if a.engine_hz:
            phase = 2 * math.pi * a.engine_hz * t
            out = out + gain * 0.25 * sum(np.sin(h * phase) / h for h in (1, 2, 3, 4, 6))
        if a.siren_period_s:
            # Wail: f(t) = 950 + 400 sin(2 pi t / T); phase is its integral, so it is exact at any t.
            w = 2 * math.pi / a.siren_period_s
            phase = 2 * math.pi * (950.0 * t - 400.0 / w * np.cos(w * t))
            out = out + gain * 1.5 * (np.sin(phase) + 0.4 * np.sin(2 * phase))
    return out
