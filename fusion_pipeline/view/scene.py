"""The views: the pipeline's messages logged to a Rerun recording, one entity per view. No sockets, no
clock: the caller gives each message with the time it was received.

Every entity is on the ``capture`` timeline (the message's stamp, event time), so a live run and a log
scrub the same way:

- ``STREAM/image``: each camera frame (compressed to JPEG for the recording), and ``STREAM/result``: the
  newest result drawn on it, its class and probability at the predicted position projected through the
  camera's mount (``[streams.sim]`` yaw, position, field of view; the simulated world's pinhole);
- ``ego/STREAM``: lidar and radar points in their sensor frame under a static transform from the mount,
  so the 3-D view shows them in the ego frame; ``ego/prediction``: the predicted position;
- ``STREAM/spectrogram``: the log-mel of the last audio window (the shipped model's front end), and
  ``result/siren_prob``;
- ``presence``: 1 or 0 per stream and result (a result per set), the presence mask as a timeline;
- ``latency``: each result's stage latencies in ms (`ops.metrics.ResultStats`), a series per stage;
- ``result/class_probs``: each result's class probabilities, a series per class;
- ``result/log``: one text entry per result (class, position, siren, presence);
- ``viewer/STREAM/skipped``, ``viewer/STREAM/lost``: what the viewer did not show (`drain.DrainTally`).
"""

from __future__ import annotations

import io
import logging
import math
from collections import deque
from dataclasses import replace
from typing import Any

import cv2
import numpy as np
import rerun as rr
import rerun.blueprint as rrb
from PIL import Image as PILImage

from fusion_pipeline.config import Config, StreamConfig
from fusion_pipeline.errors import FusionError
from fusion_pipeline.ops.metrics import ResultStats
from fusion_pipeline.preprocess import AudioParams, preprocess_audio
from fusion_pipeline.protocol import RESULT_MODALITY
from fusion_pipeline.sim import CAMERA_HEIGHT_M, LIDAR_HEIGHT_M, RADAR_HEIGHT_M, Mount, SimSettings
from fusion_pipeline.transport.wire import Sample
from fusion_pipeline.view.drain import DrainTally
from fusion_pipeline.view.errors import ViewError

__all__ = ["CAPTURE_TIMELINE", "RESULT_LOG", "Scene", "blueprint", "project"]

log = logging.getLogger(__name__)

CAPTURE_TIMELINE = "capture"
RESULT_LOG = "result/log"  # one entry per result
EGO = "ego"
_MOUNT_HEIGHT_M = {"camera": CAMERA_HEIGHT_M, "lidar": LIDAR_HEIGHT_M, "radar": RADAR_HEIGHT_M}
# Colours as packed 0xRRGGBBAA: rerun takes a uint32 array in half the time of RGB tuples.
_CLASS_COLORS = np.array([0xA0A0A0FF, 0x3C8CFFFF, 0xFFC800FF, 0x00DC78FF, 0xFF2828FF], np.uint32)
_NO_CLASS_COLOR = np.array([0xFFFFFFFF], np.uint32)
_APPROACHING, _RECEDING = np.uint32(0xFF5028FF), np.uint32(0x28A0FFFF)  # radar: radial velocity < 0, >= 0
_SPECTROGRAM_EVERY_NS = 100_000_000  # a new audio picture per 0.1 s of audio


def project(mount: Mount, width: int, height: int, x_m: float, y_m: float) -> tuple[float, float] | None:
    """The pixel (u, v) of the ground point (x_m, y_m) of the ego frame in a camera on `mount` whose
    image is `width` x `height`: the simulated world's pinhole (sim/world.py: focal length from the
    horizontal field of view, the camera CAMERA_HEIGHT_M above the ground). None when the point lies
    behind the camera or outside the image."""
    yaw = math.radians(mount.yaw_deg)
    dx, dy = x_m - mount.x_m, y_m - mount.y_m
    depth = math.cos(yaw) * dx + math.sin(yaw) * dy
    lateral = math.cos(yaw) * dy - math.sin(yaw) * dx
    if depth < 0.5:
        return None
    focal = width / 2 / math.tan(math.radians(mount.fov_deg) / 2)
    u = width / 2 - focal * lateral / depth
    v = height / 2 + focal * CAMERA_HEIGHT_M / depth
    return (u, v) if 0 <= u < width and 0 <= v < height else None


def _mount(stream: StreamConfig) -> Mount:
    return SimSettings.from_stream(stream).mount


def _audio_params(stream: StreamConfig) -> AudioParams | None:
    """The shipped model's log-mel front end at the stream's sample rate; None (no spectrogram, said once)
    where it cannot take that rate."""
    rate = stream.sample_rate or AudioParams.sample_rate
    try:
        return replace(AudioParams(), sample_rate=rate, f_max_hz=min(AudioParams.f_max_hz, rate / 2))
    except FusionError as exc:
        log.warning("%s: no spectrogram (%s)", stream.name, exc)
        return None


def blueprint(config: Config) -> rrb.Blueprint:
    """The layout: the cameras and the 3-D ego view on top; audio, presence and latency below."""
    cameras = [
        rrb.Spatial2DView(origin=s.name, name=s.name) for s in config.streams if s.modality == "camera"
    ]
    audio = [
        rrb.Spatial2DView(origin=f"{s.name}/spectrogram", name=f"{s.name} log-mel")
        for s in config.streams
        if s.modality == "audio"
    ]
    return rrb.Blueprint(
        rrb.Vertical(
            rrb.Horizontal(*cameras, rrb.Spatial3DView(origin=EGO, name="ego frame")),
            rrb.Horizontal(
                *audio,
                rrb.TimeSeriesView(origin="result", name="siren and classes"),
                rrb.TimeSeriesView(origin="presence", name="presence per set"),
                rrb.TimeSeriesView(origin="latency", name="stage latency (ms)"),
                rrb.TextLogView(origin=RESULT_LOG, name="results"),
            ),
            row_shares=[3, 2],
        ),
        collapse_panels=True,
    )


class Scene:
    """Logs messages of `config`'s streams and its results to `recording`.

    `log_time`: the messages come from a log, so their stage stamps are the replay's and their capture
    stamps the log's (latencies start at ingest_in, as `ops.metrics.ResultStats` says). `jpeg_quality`:
    camera frames are stored JPEG-compressed (0 keeps raw pixels: 900 KB a frame). `max_points`: a lidar
    cloud is thinned to at most this many points (every k-th) to keep the recording small.
    """

    def __init__(
        self,
        config: Config,
        recording: rr.RecordingStream,
        *,
        log_time: bool = False,
        jpeg_quality: int = 80,
        max_points: int = 20_000,
    ) -> None:
        self.recording = recording
        self.jpeg_quality = jpeg_quality
        self.max_points = max_points
        self.streams = {s.name: s for s in config.streams}
        self.cameras = {s.name: _mount(s) for s in config.streams if s.modality == "camera"}
        self._image_size: dict[str, tuple[int, int]] = {}  # the newest frame's (width, height) per camera
        self._stats = ResultStats(list(self.streams), log_time=log_time)
        self._audio = {
            s.name: (params, deque())
            for s in config.streams
            if s.modality == "audio" and (params := _audio_params(s)) is not None
        }
        self._spectrogram_ns: dict[str, int] = {}
        self._counted: dict[str, tuple[int, int]] = {}  # (skipped, lost) last logged per stream
        self._series_names: dict[str, list[str]] = {}  # each series entity's names, in their places
        self._static()

    def _static(self) -> None:
        """Where each sensor sits on the ego: static, so every frame of the 3-D view uses it."""
        rec = self.recording
        rec.log(EGO, rr.ViewCoordinates.RIGHT_HAND_Z_UP, static=True)
        rec.log(
            f"{EGO}/vehicle", rr.Boxes3D(half_sizes=[[2.3, 0.95, 0.75]], centers=[[0, 0, 0.75]]), static=True
        )
        for stream in self.streams.values():
            if stream.modality in ("lidar", "radar"):
                mount = _mount(stream)
                transform = rr.Transform3D(
                    translation=[mount.x_m, mount.y_m, _MOUNT_HEIGHT_M[stream.modality]],
                    rotation=rr.RotationAxisAngle(axis=[0, 0, 1], degrees=mount.yaw_deg),
                )
                rec.log(f"{EGO}/{stream.name}", transform, static=True)

    def show(self, sample: Sample, received_ns: int) -> None:
        """Log one message at its capture stamp."""
        # rerun's arrow takes a contiguous array without a copy and aborts the process (a Rust panic) on
        # one not aligned for its type, as a float32 array at an odd offset in a recorded log can be.
        arrays = {name: np.require(a, requirements=("C", "A")) for name, a in sample.arrays.items()}
        sample = replace(sample, arrays=arrays)
        rec = self.recording
        rec.set_time(CAPTURE_TIMELINE, timestamp=np.datetime64(sample.stamp_ns, "ns"))
        if sample.modality == RESULT_MODALITY:
            self._result(sample, received_ns)
        elif sample.modality == "camera" and "image" in arrays:
            image = arrays["image"]  # rgb8 HxWx3 (the wire's camera schema)
            self._image_size[sample.stream] = (image.shape[1], image.shape[0])
            rec.log(f"{sample.stream}/image", self._frame(image))
        elif sample.modality == "camera" and "jpeg" in arrays:
            contents = arrays["jpeg"].tobytes()
            self._image_size[sample.stream] = PILImage.open(io.BytesIO(contents)).size  # the header only
            rec.log(f"{sample.stream}/image", rr.EncodedImage(contents=contents, media_type="image/jpeg"))
        elif sample.modality == "lidar" and "points" in arrays:
            points = arrays["points"]
            step = max(1, math.ceil(len(points) / self.max_points))
            rec.log(f"{EGO}/{sample.stream}", rr.Points3D(points[::step, :3], radii=0.04))
        elif sample.modality == "radar" and "detections" in arrays:
            detections = arrays["detections"]
            colors = np.where(detections[:, 3] < 0, _APPROACHING, _RECEDING)
            rec.log(f"{EGO}/{sample.stream}", rr.Points3D(detections[:, :3], radii=0.25, colors=colors))
        elif sample.modality == "audio" and "samples" in arrays:
            self._audio_chunk(sample)
        elif sample.modality == "generic" and "values" in arrays and arrays["values"].size <= 16:
            rec.log(f"{sample.stream}/values", rr.Scalars(arrays["values"].astype(np.float64).ravel()))

    def _frame(self, image: np.ndarray) -> rr.Image | rr.EncodedImage:
        """A camera frame for the recording: JPEG by OpenCV (0.7 ms for 640x480 here, against 2.2 ms for
        rerun's own `Image.compress`), or the raw pixels where jpeg_quality is 0."""
        if not self.jpeg_quality:
            return rr.Image(image)
        bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
        ok, jpeg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
        if not ok:
            raise ViewError(f"OpenCV could not encode a {image.shape} {image.dtype} camera frame as JPEG")
        return rr.EncodedImage(contents=jpeg.tobytes(), media_type="image/jpeg")

    def _audio_chunk(self, sample: Sample) -> None:
        """Keep the last window of a microphone and draw its log-mel every _SPECTROGRAM_EVERY_NS."""
        if sample.stream not in self._audio:
            return
        params, chunks = self._audio[sample.stream]
        chunks.append(np.asarray(sample.arrays["samples"]))
        while sum(len(c) for c in chunks) - len(chunks[0]) >= params.window_samples:
            chunks.popleft()  # the window is full without the oldest chunk
        if sum(len(c) for c in chunks) < params.window_samples:
            return
        if sample.stamp_ns < self._spectrogram_ns.get(sample.stream, 0):
            return
        self._spectrogram_ns[sample.stream] = sample.stamp_ns + _SPECTROGRAM_EVERY_NS
        window = np.concatenate(list(chunks))[-params.window_samples :]
        logmel = preprocess_audio(window, params)[0]  # (mels, frames)
        low, high = float(logmel.min()), float(logmel.max())
        picture = ((logmel - low) / max(high - low, 1e-6) * 255).astype(np.uint8)
        self.recording.log(f"{sample.stream}/spectrogram", rr.Image(picture[::-1]))  # low bands at the bottom

    def _result(self, sample: Sample, received_ns: int) -> None:
        rec, arrays, meta = self.recording, sample.arrays, sample.meta
        latency = self._stats.add(sample, received_ns)
        self._series("latency", {name.replace("->", "_to_"): ns / 1e6 for name, ns in latency.items()})
        presence = np.asarray(arrays.get("presence", ())).ravel()
        names = meta.get("streams") if isinstance(meta.get("streams"), list) else []
        present = {str(name): bool(bit) for name, bit in zip(names, presence, strict=False) if name}
        self._series("presence", {name: float(bit) for name, bit in present.items()})
        label, class_index = self._class(sample)
        siren = float(arrays["siren_prob"].ravel()[0]) if "siren_prob" in arrays else None
        if siren is not None:
            rec.log("result/siren_prob", rr.Scalars(siren))
        position = arrays.get("position")
        xy = (
            None
            if position is None or position.size < 2 or class_index == 0
            else tuple(map(float, position[:2]))
        )
        color = (
            _CLASS_COLORS[[class_index % len(_CLASS_COLORS)]] if class_index is not None else _NO_CLASS_COLOR
        )
        self._draw(label, xy, color)
        text = label
        if xy is not None:
            text += f" at ({xy[0]:.1f}, {xy[1]:.1f}) m"
        if siren is not None:
            text += f", siren {siren:.0%}"
        text += ", present: " + " ".join(n for n, bit in present.items() if bit)
        rec.log(RESULT_LOG, rr.TextLog(text))

    def _class(self, sample: Sample) -> tuple[str, int | None]:
        """The result's most probable class, as a label, and its index (None: the model has no classes)."""
        probs = sample.arrays.get("class_probs")
        if probs is None or not probs.size:
            return "result", None
        classes = sample.meta.get("classes") or [str(i) for i in range(probs.size)]
        best = int(np.argmax(probs))
        name = classes[best] if best < len(classes) else str(best)
        labels = [str(classes[i]) if i < len(classes) else str(i) for i in range(probs.size)]
        self._series("result/class_probs", dict(zip(labels, map(float, probs.ravel()), strict=True)))
        return f"{name} {float(probs.ravel()[best]):.0%}", best

    def _series(self, entity: str, values: dict[str, float]) -> None:
        """`values` as one row of `entity`, a named series per key. One Scalars row for them all, as
        each `log` call costs about 30 us of rerun's Python whatever it holds (a row per series cost the
        viewer a third of its CPU). Rerun names a row's values by position, so each name keeps its
        place: a name not seen before is added at the end (the names logged again), one missing from
        this row is NaN, a gap in its line."""
        if not values:
            return
        names = self._series_names.setdefault(entity, [])
        if any(name not in names for name in values):
            names.extend(name for name in values if name not in names)
            self.recording.log(entity, rr.SeriesLines(names=names))
        self.recording.log(entity, rr.Scalars(np.array([values.get(n, np.nan) for n in names], np.float64)))

    def _draw(self, label: str, xy: tuple[float, float] | None, color: np.ndarray) -> None:
        """The result on every camera (at the projected position, or in the corner when it is out of
        view) and in the 3-D view."""
        rec = self.recording
        for camera, mount in self.cameras.items():
            width, height = self._image_size.get(camera, (0, 0))
            if not width:
                continue
            pixel = None if xy is None else project(mount, width, height, *xy)
            where = pixel if pixel is not None else (12.0, 16.0)
            text = label if pixel is not None or xy is None else f"{label} (out of view)"
            rec.log(
                f"{camera}/result",
                rr.Points2D(
                    [where], radii=6.0 if pixel else 0.5, colors=color, labels=[text], show_labels=True
                ),
            )
        positions = [] if xy is None else [[xy[0], xy[1], 0.75]]
        rec.log(f"{EGO}/prediction", rr.Points3D(positions, radii=0.6, colors=color, labels=[label]))

    def counters(self, tally: DrainTally) -> None:
        """The viewer's own counts of each stream, when they changed, at the newest capture time set."""
        for name, counts in tally.streams.items():
            now = (counts.skipped, counts.lost)
            if self._counted.get(name) == now:
                continue
            self._counted[name] = now
            self.recording.log(f"viewer/{name}/skipped", rr.Scalars(float(counts.skipped)))
            self.recording.log(f"viewer/{name}/lost", rr.Scalars(float(counts.lost)))

    def summary(self) -> dict[str, Any]:
        """The latency figures of the results shown (`ResultStats.latency`)."""
        return self._stats.latency()
