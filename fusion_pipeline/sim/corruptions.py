"""Degraded sensors: corruptions of a raw sensor payload at three severities, the sensor still present.

Sensors mostly fail by degrading, not by going silent (benchmarks such as nuScenes-C and MultiCorrupt
measure this), so a corrupted payload keeps its presence bit at 1. Each kind is one small function of the
raw payload the world renders (a camera's HxWx3 uint8 image, a lidar's Nx4 points, a radar's Mx5
detections, float32 audio samples), its severity's level and a seeded generator, applied before the
front end, as a real sensor's fault would be:

==================  ====================================================  ===========================
kind                what happens                                          level at severity 1, 2, 3
==================  ====================================================  ===========================
camera_noise        Gaussian pixel noise (sensor gain at night)           sigma 10, 25, 50 grey levels
camera_blur         Gaussian blur (defocus, motion, a wet lens)           sigma 2, 5, 10 pixels
camera_glare        a veil towards white plus a bright bloom (low sun)    veil 0.15, 0.3, 0.5
camera_occlusion    dark rectangles (mud, a leaf) over the image          2, 4, 8 patches
lidar_beam_dropout  whole elevation rings lost (dead lasers)              25 %, 50 %, 75 % of beams
lidar_range_noise   noise along each ray                                  sigma 0.1, 0.3, 0.6 m
lidar_spurious      clumps of false returns (spray, dust)                 3, 8, 20 clumps of 30 points
radar_ghosts        target-like false detections (multipath)              2, 6, 12 ghosts
radar_misses        detections lost                                       20 %, 40 %, 70 % of them
audio_wind          low-frequency gusting noise on the microphone         rms 0.03, 0.1, 0.3
audio_clipping      the signal clipped at a fraction of its peak          at 50 %, 20 %, 5 % of the peak
==================  ====================================================  ===========================

`Corruption(kind, severity)` names one and applies it; `CORRUPTIONS` lists the kinds. The dataset
renders a corrupted copy of a world seed (`sim.dataset.generate(..., corruption=...)`, for `model eval
--corruptions`), or, for training, a `CorruptionMix`: each sample corrupted with a probability, by one of
several corruptions. A simulated driver corrupts what it sends (``[streams.sim] corruption =
"camera_blur", severity = 2``). The same (payload, generator) gives the same result.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from fusion_pipeline.sim.errors import CorruptionError
from fusion_pipeline.sim.world import AUDIO_SAMPLE_RATE, LIDAR_BEAMS, LIDAR_ELEVATION_DEG

__all__ = ["CORRUPTIONS", "LEVELS", "SEVERITIES", "Corruption", "CorruptionMix"]

SEVERITIES: tuple[int, ...] = (1, 2, 3)

Corrupt = Callable[[np.ndarray, float, np.random.Generator], np.ndarray]


def camera_noise(image: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    noisy = image + rng.normal(0.0, sigma, image.shape).astype(np.float32)
    return np.clip(np.round(noisy), 0, 255).astype(np.uint8)


def camera_blur(image: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    return cv2.GaussianBlur(image, (0, 0), sigmaX=sigma)


def camera_glare(image: np.ndarray, veil: float, rng: np.random.Generator) -> np.ndarray:
    """A veil of `veil` towards white over the whole image, plus a bloom that saturates a disc in the upper
    half, where a low sun or an oncoming headlight sits; its radius grows with the veil."""
    h, w = image.shape[:2]
    cy, cx = rng.uniform(0.1, 0.5) * h, rng.uniform(0.1, 0.9) * w
    yy, xx = np.ogrid[:h, :w]
    radius = veil * h
    bloom = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * radius**2))
    white = np.clip(veil + bloom, 0.0, 1.0)[..., None]
    return np.round(image * (1.0 - white) + 255.0 * white).astype(np.uint8)


def camera_occlusion(image: np.ndarray, patches: float, rng: np.random.Generator) -> np.ndarray:
    """`patches` dark-brown rectangles, each 10-25 % of the image's height and width."""
    out = image.copy()
    h, w = image.shape[:2]
    for _ in range(int(patches)):
        ph, pw = int(rng.uniform(0.1, 0.25) * h), int(rng.uniform(0.1, 0.25) * w)
        y, x = int(rng.integers(0, h - ph)), int(rng.integers(0, w - pw))
        out[y : y + ph, x : x + pw] = rng.integers(20, 60, 3, dtype=np.uint8)
    return out


def lidar_beam(points: np.ndarray) -> np.ndarray:
    """The beam (elevation ring, 0 = lowest) each point was returned on; points off every ring (the
    weather's backscatter) get the nearest."""
    low, high = LIDAR_ELEVATION_DEG
    elevation = np.degrees(np.arctan2(points[:, 2], np.hypot(points[:, 0], points[:, 1])))
    step = (high - low) / (LIDAR_BEAMS - 1)
    return np.clip(np.round((elevation - low) / step), 0, LIDAR_BEAMS - 1).astype(np.int64)


def lidar_beam_dropout(points: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    dead = rng.permutation(LIDAR_BEAMS)[: round(fraction * LIDAR_BEAMS)]
    return points[~np.isin(lidar_beam(points), dead)]


def lidar_range_noise(points: np.ndarray, sigma_m: float, rng: np.random.Generator) -> np.ndarray:
    """Each point moved along its ray by a normal error: the direction stays, the range does not."""
    out = points.copy()
    r = np.linalg.norm(points[:, :3], axis=1, keepdims=True)
    scale = np.maximum(r + rng.normal(0.0, sigma_m, r.shape), 0.0) / np.maximum(r, 1e-6)
    out[:, :3] *= scale.astype(np.float32)
    return out


def lidar_spurious(points: np.ndarray, clumps: float, rng: np.random.Generator) -> np.ndarray:
    """`clumps` clumps of 30 false returns, each within 1 m of a centre 3-60 m ahead and +-20 m aside,
    from the ground to 2 m: false obstacles in the forward view."""
    n = int(clumps)
    centres = np.stack([rng.uniform(3, 60, n), rng.uniform(-20, 20, n), rng.uniform(-1.8, 0.2, n)], 1)
    xyz = np.repeat(centres, 30, axis=0) + rng.normal(0.0, 0.5, (30 * n, 3))
    false = np.concatenate([xyz, rng.uniform(0.0, 0.5, (30 * n, 1))], axis=1).astype(np.float32)
    return np.concatenate([points, false])


def radar_ghosts(detections: np.ndarray, ghosts: float, rng: np.random.Generator) -> np.ndarray:
    """`ghosts` false detections with a target's range, speed and rcs, inside the radar's field of view."""
    n = int(ghosts)
    r, az = rng.uniform(5, 60, n), np.radians(rng.uniform(-50, 50, n))
    false = np.stack(
        [
            r * np.cos(az),
            r * np.sin(az),
            rng.uniform(-0.5, 1.0, n),
            rng.uniform(-15, 15, n),
            rng.uniform(-8, 12, n),
        ],
        axis=1,
    ).astype(np.float32)
    out = np.concatenate([detections, false])
    return out[rng.permutation(len(out))]  # a radar lists detections in no useful order


def radar_misses(detections: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    return detections[rng.random(len(detections)) >= fraction]


def audio_wind(samples: np.ndarray, rms: float, rng: np.random.Generator) -> np.ndarray:
    """Wind on the microphone: noise below ~300 Hz (white noise shaped in the frequency domain, falling
    as 1/f), gusting with a 0.5-2 Hz envelope, scaled to `rms`."""
    n = len(samples)
    if n == 0:
        return samples
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1.0 / AUDIO_SAMPLE_RATE)
    noise = np.fft.irfft(spectrum / np.maximum(f, 20.0) * (f < 300.0), n)
    t = np.arange(n) / AUDIO_SAMPLE_RATE
    gust = 1.0 + 0.5 * np.sin(2 * math.pi * rng.uniform(0.5, 2.0) * t + rng.uniform(0, 2 * math.pi))
    wind = noise * gust
    wind *= rms / max(float(np.sqrt(np.mean(wind**2))), 1e-12)
    return (samples + wind).astype(samples.dtype)


def audio_clipping(samples: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    level = fraction * float(np.abs(samples).max(initial=0.0))
    return np.clip(samples, -level, level)


#: Each kind: its function and its level at severity 1, 2, 3 (the table in the module's docstring).
CORRUPTIONS: dict[str, tuple[Corrupt, tuple[float, float, float]]] = {
    "camera_noise": (camera_noise, (10.0, 25.0, 50.0)),
    "camera_blur": (camera_blur, (2.0, 5.0, 10.0)),
    "camera_glare": (camera_glare, (0.15, 0.3, 0.5)),
    "camera_occlusion": (camera_occlusion, (2, 4, 8)),
    "lidar_beam_dropout": (lidar_beam_dropout, (0.25, 0.5, 0.75)),
    "lidar_range_noise": (lidar_range_noise, (0.1, 0.3, 0.6)),
    "lidar_spurious": (lidar_spurious, (3, 8, 20)),
    "radar_ghosts": (radar_ghosts, (2, 6, 12)),
    "radar_misses": (radar_misses, (0.2, 0.4, 0.7)),
    "audio_wind": (audio_wind, (0.03, 0.1, 0.3)),
    "audio_clipping": (audio_clipping, (0.5, 0.2, 0.05)),
}
LEVELS: dict[str, tuple[float, float, float]] = {kind: levels for kind, (_, levels) in CORRUPTIONS.items()}


@dataclass(frozen=True)
class Corruption:
    """One kind of corruption (a key of CORRUPTIONS, named `<modality>_<what>`) at a severity 1-3."""

    kind: str
    severity: int = 2

    def __post_init__(self) -> None:
        if self.kind not in CORRUPTIONS:
            raise CorruptionError(f"corruption {self.kind!r} is not one of {', '.join(CORRUPTIONS)}")
        if isinstance(self.severity, bool) or self.severity not in SEVERITIES:
            raise CorruptionError(
                f"corruption {self.kind!r}: severity must be 1, 2 or 3, got {self.severity!r}"
            )

    @classmethod
    def parse(cls, text: str) -> Corruption:
        """`KIND:SEVERITY` (`camera_blur:2`)."""
        kind, sep, severity = text.partition(":")
        if not sep or not severity.strip().isdigit():
            raise CorruptionError(f"corruption {text!r}: expected KIND:SEVERITY, e.g. camera_blur:2")
        return cls(kind.strip(), int(severity))

    @property
    def modality(self) -> str:
        return self.kind.split("_", 1)[0]

    @property
    def level(self) -> float:
        return LEVELS[self.kind][self.severity - 1]

    def __str__(self) -> str:
        return f"{self.kind}:{self.severity}"

    def apply(self, payload: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The corrupted copy of a raw `payload` of this corruption's modality; `payload` is left as it is."""
        corrupt, _ = CORRUPTIONS[self.kind]
        return corrupt(payload, self.level, rng)


@dataclass(frozen=True)
class CorruptionMix:
    """Training data with degraded sensors: each sample is corrupted with probability `share`, by one of
    `corruptions` drawn uniformly (`pick`, from the sample's own generator)."""

    corruptions: tuple[Corruption, ...]
    share: float

    def __post_init__(self) -> None:
        if not self.corruptions:
            raise CorruptionError("a corruption mix needs at least one corruption")
        if not 0 < self.share <= 1:
            raise CorruptionError(f"a corruption mix's share must be in (0, 1], got {self.share}")

    def __str__(self) -> str:
        return f"{self.share:g} of {','.join(map(str, self.corruptions))}"

    def pick(self, rng: np.random.Generator) -> Corruption | None:
        """The corruption of one sample, or None for a clean one; two draws from `rng` either way."""
        corrupted, which = rng.random() < self.share, int(rng.integers(len(self.corruptions)))
        return self.corruptions[which] if corrupted else None
