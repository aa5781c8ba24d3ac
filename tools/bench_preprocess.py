"""Cost per frame of preprocessing and of world rendering, each beside a naive baseline in the same run.

    python tools/bench_preprocess.py            # print the table
    python tools/bench_preprocess.py --write    # also replace "## Preprocessing" in docs/BENCHMARKS.md
    python tools/bench_preprocess.py --dataset 4000 --write   # plus the time to generate a dataset

Inputs are real world renders of 8 episodes (all four conditions). Contender and baseline run
alternately on the same inputs, so machine load hits both alike. Baselines:
- camera: the numpy code OpenCV replaced (tools/preprocess_reference.py: separable taps, any scale
  factor), and the obvious numpy block mean (reshape + mean, integer scale factors only);
- jpeg: Pillow's decode, which OpenCV's replaced (the renders as JPEG files, quality 90);
- lidar: a per-point Python loop over a 1/20 subset, scaled by 20; and np.add.at in place of bincount;
- radar: Python sorted() over rows (at a typical ~15 detections and at 256, a cluttered scan);
- audio: a Python loop over the 48 frames (one rfft and one mel product each);
- world lidar: the slab test against all 65536 rays per actor instead of the actor's azimuth slice.
"""

from __future__ import annotations

import argparse
import io
import math
import os
import platform
import tempfile
import time
from collections.abc import Callable

import cv2
import numpy as np
from benchdoc import BENCHMARKS, machine, replace_section
from PIL import Image
from preprocess_reference import CAMERA_TOLERANCE, camera_separable_taps, decode_jpeg_pillow

from fusion_pipeline.ingest import decode_jpeg
from fusion_pipeline.preprocess import (
    AudioParams,
    CameraParams,
    LidarParams,
    RadarParams,
    preprocess_audio,
    preprocess_camera,
    preprocess_lidar,
    preprocess_radar,
)
from fusion_pipeline.preprocess.audio import mel_filterbank
from fusion_pipeline.sim import World, generate
from fusion_pipeline.sim import world as world_module

SECTION = "## Preprocessing"
SECOND = 1_000_000_000
CAMERA_HZ = 30  # the demo camera's rate: the frames of a 60 s log
# The default model's front ends, which the contenders run with and the baselines reimplement.
CAMERA, LIDAR, RADAR, AUDIO = CameraParams(), LidarParams(), RadarParams(), AudioParams()


# -- baselines ------------------------------------------------------------------------------------------


def camera_block_mean(image: np.ndarray) -> np.ndarray:
    h, w, _ = image.shape
    blocks = image.reshape(96, h // 96, 128, w // 128, 3).mean(axis=(1, 3))
    mean, std = np.array(CAMERA.mean), np.array(CAMERA.std)
    return ((blocks / 255.0 - mean) / std).transpose(2, 0, 1).astype(np.float32)


def lidar_point_loop(points: np.ndarray) -> np.ndarray:
    (x0, x1), (y0, y1), (z0, z1) = LIDAR.x_range_m, LIDAR.y_range_m, LIDAR.z_range_m
    count = np.zeros((64, 64))
    height = np.zeros((64, 64))
    intensity = np.zeros((64, 64))
    for x, y, z, i in points.tolist():
        if x0 <= x < x1 and y0 <= y < y1 and z0 <= z <= z1:
            r, c = int(x - x0), int(y - y0)
            count[r, c] += 1
            height[r, c] = max(height[r, c], (z - z0) / (z1 - z0))
            intensity[r, c] += i
    occupancy = np.minimum(np.log1p(count) / math.log1p(LIDAR.occupancy_saturation), 1.0)
    return np.stack([occupancy, height, intensity / np.maximum(count, 1)]).astype(np.float32)


def lidar_add_at(points: np.ndarray) -> np.ndarray:
    """The vectorised BEV with np.add.at for the sums instead of np.bincount."""
    x, y, z, i = points.T
    inside = (x >= 0) & (x < 64) & (y >= -32) & (y < 32) & (z >= -2.5) & (z <= 1.5)
    cell = (x[inside].astype(np.int64)) * 64 + (y[inside] + 32).astype(np.int64)
    count = np.zeros(4096)
    np.add.at(count, cell, 1.0)
    height = np.zeros(4096)
    np.maximum.at(height, cell, (z[inside] + 2.5) / 4.0)
    total = np.zeros(4096)
    np.add.at(total, cell, i[inside])
    occupancy = np.minimum(np.log1p(count) / math.log1p(16), 1.0)
    return np.stack([occupancy, height, total / np.maximum(count, 1)]).reshape(3, 64, 64).astype(np.float32)


def radar_python_sort(detections: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rows = sorted(detections.tolist(), key=lambda d: math.sqrt(d[0] ** 2 + d[1] ** 2 + d[2] ** 2))[:64]
    out = np.zeros((64, 5), np.float32)
    mask = np.zeros(64, np.float32)
    for k, row in enumerate(rows):
        out[k] = np.array(row) / np.array(RADAR.scale)
        mask[k] = 1.0
    return out, mask


def audio_frame_loop(samples: np.ndarray) -> np.ndarray:
    x = samples[-AUDIO.window_samples :].astype(np.float32) / 32768.0
    window = np.hanning(AUDIO.n_fft + 1)[:-1]  # periodic Hann
    fb = mel_filterbank()
    columns = []
    for start in range(0, len(x) - AUDIO.n_fft + 1, AUDIO.hop):
        power = np.abs(np.fft.rfft(x[start : start + AUDIO.n_fft] * window)) ** 2
        columns.append(np.log(fb @ power + 1e-6))
    return np.stack(columns, axis=1)[None].astype(np.float32)


def jpeg_file(image: np.ndarray) -> np.ndarray:
    out = io.BytesIO()
    Image.fromarray(image).save(out, format="JPEG", quality=90)
    return np.frombuffer(out.getvalue(), np.uint8)


def decode_jpeg_opencv(data: np.ndarray) -> np.ndarray:
    return decode_jpeg(data, "camera/front", 1 << 30)


# -- timing ---------------------------------------------------------------------------------------------


def time_pair(
    inputs: list[object],
    contender: Callable[[object], object],
    baseline: Callable[[object], object],
    rounds: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-call seconds of contender and baseline, alternating call by call over `rounds` passes."""
    a, b = [], []
    for _ in range(rounds):
        for x in inputs:
            t0 = time.perf_counter()
            contender(x)
            t1 = time.perf_counter()
            baseline(x)
            t2 = time.perf_counter()
            a.append(t1 - t0)
            b.append(t2 - t1)
    return np.array(a), np.array(b)


def time_one(inputs: list[object], fn: Callable[[object], object], rounds: int) -> np.ndarray:
    return time_pair(inputs, fn, lambda _: None, rounds)[0]


def stats(seconds: np.ndarray, scale: float = 1.0) -> dict[str, float]:
    """Milliseconds: median, p99 and inter-quartile range."""
    ms = seconds * 1e3 * scale
    q1, q3 = np.percentile(ms, [25, 75])
    return {"median": float(np.median(ms)), "p99": float(np.percentile(ms, 99)), "iqr": float(q3 - q1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="passes over the inputs (default %(default)s)")
    parser.add_argument("--write", action="store_true", help=f"replace '{SECTION}' in {BENCHMARKS}")
    parser.add_argument(
        "--dataset", type=int, default=0, help="also time dataset.generate of this many samples"
    )
    args = parser.parse_args()

    world = World(42)
    stamps = [world.episode_start_ns(k) + SECOND + 7_000_000 * k for k in range(8)]
    frames = {
        "camera": [world.camera(t) for t in stamps],
        "lidar": [world.lidar(t) for t in stamps],
        "radar": [world.radar(t) for t in stamps],
        "audio": [world.audio(t - SECOND // 2, 8000, dtype="int16") for t in stamps],
    }
    conditions = sorted({world.episode(k).condition for k in range(8)})
    n_points = np.mean([len(p) for p in frames["lidar"]])
    cluttered = [np.resize(np.concatenate(frames["radar"]), (256, 5)) for _ in range(8)]
    jpegs = [jpeg_file(image) for image in frames["camera"]]
    camera_before = lambda image: camera_separable_taps(image, CAMERA)  # noqa: E731

    # (what, inputs, ours, baseline name, baseline, baseline inputs scale)
    pairs = [
        (
            "camera 480x640 -> 3x96x128",
            frames["camera"],
            preprocess_camera,
            "numpy separable taps (before OpenCV)",
            camera_before,
        ),
        ("camera 480x640 -> 3x96x128", frames["camera"], preprocess_camera, "block mean", camera_block_mean),
        ("jpeg decode 480x640", jpegs, decode_jpeg_opencv, "Pillow (before OpenCV)", decode_jpeg_pillow),
        (
            f"lidar BEV, {n_points:.0f} points",
            frames["lidar"],
            preprocess_lidar,
            "np.add.at sums",
            lidar_add_at,
        ),
        ("radar -> 64x5 + mask", frames["radar"], preprocess_radar, "python sorted()", radar_python_sort),
        ("radar, 256 detections", cluttered, preprocess_radar, "python sorted()", radar_python_sort),
        ("audio 8000 -> 1x40x48", frames["audio"], preprocess_audio, "per-frame loop", audio_frame_loop),
    ]
    rows = []
    for what, inputs, ours, base_name, base in pairs:
        a, b = time_pair(inputs, ours, base, args.rounds)
        rows.append((what, stats(a), base_name, stats(b)))
    # The point loop is too slow for whole clouds: it runs on every 20th point and is scaled by 20.
    loop = time_pair([p[::20] for p in frames["lidar"]], lambda _: None, lidar_point_loop, 1)[1]
    rows.insert(4, ("lidar BEV", rows[3][1], "per-point loop", stats(loop, 20.0)))
    camera_ms, camera_before_ms = rows[0][1]["median"], rows[0][3]["median"]
    log_frames = 60 * CAMERA_HZ
    camera_difference = max(
        float(np.abs(preprocess_camera(image) - camera_before(image)).max()) for image in frames["camera"]
    )
    jpeg_same = all(np.array_equal(decode_jpeg_opencv(d), decode_jpeg_pillow(d)) for d in jpegs)

    renders = [("camera", 30, world.camera), ("lidar", 10, world.lidar), ("radar", 20, world.radar),
               ("audio, 20 ms chunk", 50, lambda t: world.audio(t, 320))]  # fmt: skip
    render_rows = [(name, rate, stats(time_one(stamps, fn, args.rounds))) for name, rate, fn in renders]
    sliced = stats(time_one(stamps, world.lidar, args.rounds))
    original = world_module._lidar_azimuth_slice
    world_module._lidar_azimuth_slice = lambda corners, n_az: np.arange(n_az)  # every ray against every box
    try:
        every_ray = stats(time_one(stamps, world.lidar, args.rounds))
    finally:
        world_module._lidar_azimuth_slice = original

    lines = [
        SECTION,
        "",
        "Cost per frame (ms) of `fusion_pipeline/preprocess` and of the world's rendering, each beside a",
        "naive baseline run alternately on the same inputs.",
        "",
        "```",
        f"python tools/bench_preprocess.py --rounds {args.rounds}"
        + (f" --dataset {args.dataset}" if args.dataset else "")
        + " --write",
        "```",
        "",
        f"Inputs: 8 world frames per sensor (world seed 42; conditions {', '.join(conditions)}). Machine: "
        f"{machine()} (shared with other work), Python {platform.python_version()}, "
        f"numpy {np.__version__}, OpenCV {cv2.__version__} (one thread).",
        "",
        "| preprocessing | median | p99 | IQR | baseline | median | p99 | baseline / ours (median) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for what, ours, base_name, base in rows:
        lines.append(
            f"| {what} | {ours['median']:.3f} | {ours['p99']:.3f} | {ours['iqr']:.3f} | {base_name} | "
            f"{base['median']:.3f} | {base['p99']:.3f} | {base['median'] / ours['median']:.1f}x |"
        )
    lines += [
        "",
        "The per-point loop ran on every 20th point, its times scaled by 20.",
        "",
        f"Camera per 60 s log ({log_frames} frames at {CAMERA_HZ} Hz, medians): "
        f"{log_frames * camera_ms / 1e3:.2f} s CPU with OpenCV, {log_frames * camera_before_ms / 1e3:.2f} s "
        f"with the numpy code before it ({camera_before_ms / camera_ms:.1f}x). Outputs on these inputs: "
        f"camera max |OpenCV - numpy before| {camera_difference:.1e} (normalised units; the tests allow "
        f"{CAMERA_TOLERANCE:g}); JPEG pixels {'identical to' if jpeg_same else 'NOT identical to'} Pillow's; "
        "lidar, radar and audio unchanged (bitwise).",
        "",
        "| world render | rate | median | p99 | IQR | budget per frame | p99 / budget |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, rate, st in render_rows:
        budget = 1000.0 / rate
        lines.append(
            f"| {name} | {rate} Hz | {st['median']:.2f} | {st['p99']:.2f} | {st['iqr']:.2f} | {budget:.1f} | "
            f"{st['p99'] / budget:.0%} |"
        )
    lines += [
        "",
        f"Lidar render, rays cast against each actor's azimuth slice: median {sliced['median']:.2f} ms; "
        f"against all 65536 rays per actor (baseline): {every_ray['median']:.2f} ms "
        f"({every_ray['median'] / sliced['median']:.1f}x).",
    ]
    if args.dataset:
        with tempfile.TemporaryDirectory() as folder:
            t0 = time.perf_counter()
            generate(1, args.dataset, folder=folder, cache=False)
            elapsed = time.perf_counter() - t0
        lines += [
            "",
            f"`dataset.generate(seed, {args.dataset})`, all sensors rendered and preprocessed, "
            f"{os.cpu_count()} worker processes: {elapsed:.0f} s ({args.dataset / elapsed:.0f} samples/s).",
        ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        replace_section(BENCHMARKS, text)


if __name__ == "__main__":
    main()
