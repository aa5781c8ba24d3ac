"""Preprocessing: the contract's inputs and their parameters, determinism, reference implementations,
other parameter sets from the same functions, the default front end unchanged, bad input and bad
parameters."""

from __future__ import annotations

import hashlib
import math
import sys

import numpy as np
import pytest
import torch
from paths import ROOT

from fusion_pipeline.contract import InputSpec, default_contract
from fusion_pipeline.errors import FusionError
from fusion_pipeline.preprocess import (
    PARAMS,
    AudioParams,
    CameraParams,
    LidarParams,
    PreprocessError,
    RadarParams,
    preprocess_audio,
    preprocess_camera,
    preprocess_lidar,
    preprocess_radar,
    preprocessor_for,
)
from fusion_pipeline.sim import World

# The tools are scripts run as `python tools/NAME.py` (their folder on sys.path), not a package.
sys.path.insert(0, str(ROOT / "tools"))

from preprocess_reference import CAMERA_TOLERANCE, camera_separable_taps  # noqa: E402

SECOND = 1_000_000_000
CAMERA, LIDAR, RADAR, AUDIO = CameraParams(), LidarParams(), RadarParams(), AudioParams()


@pytest.fixture(scope="module")
def payloads() -> dict[str, np.ndarray]:
    world = World(21)
    t = 1_300_000_000
    return {
        "camera": world.camera(t),
        "lidar": world.lidar(t),
        "radar": world.radar(t),
        "audio": world.audio(t - SECOND // 2, 8000, dtype="int16"),
    }


def _input(
    name: str, params: CameraParams | LidarParams | RadarParams | AudioParams, mask: str = ""
) -> InputSpec:
    """A contract input that asks for `params`, of the shape they give."""
    return InputSpec(name, params.MODALITY, params.shape, params.to_dict(), mask=mask)


def test_every_input_of_the_default_contract_gets_its_tensors(payloads: dict[str, np.ndarray]) -> None:
    for spec in default_contract().inputs:
        out = preprocessor_for(spec)(payloads[spec.modality])
        assert {name: a.shape for name, a in out.items()} == spec.tensors
        assert all(a.dtype == np.float32 and np.isfinite(a).all() for a in out.values())


def test_preprocessing_is_deterministic_and_leaves_its_input_alone(payloads: dict[str, np.ndarray]) -> None:
    for spec in default_contract().inputs:
        payload = payloads[spec.modality]
        before = payload.copy()
        prepare = preprocessor_for(spec)
        first, second = prepare(payload), prepare(payload)
        for name in first:
            np.testing.assert_array_equal(first[name], second[name])
        np.testing.assert_array_equal(payload, before)


def test_the_default_contracts_preprocess_dicts_parse_back_to_the_default_params() -> None:
    contract = default_contract()
    assert [s.modality for s in contract.inputs] == [m for m in PARAMS if m != "generic"]  # no IMU in it
    for spec in contract.inputs:
        params = PARAMS[spec.modality].from_dict(spec.preprocess)
        assert params == PARAMS[spec.modality]()
        assert params.shape == spec.shape
        assert preprocessor_for(spec).params == params
    assert contract.input("audio").preprocess["n_fft"] == 400
    assert contract.input("audio").preprocess["mel_scale"] == "htk"  # a FIXED key, stated for the reader


def _payloads_for_digests() -> dict[str, list[np.ndarray]]:
    """Seeded payloads of every modality, edge cases included (see DEFAULT_DIGESTS)."""
    rng = np.random.default_rng(2024)
    points = np.column_stack([rng.uniform(-10, 70, (3000, 3)), rng.uniform(0, 1, 3000)]).astype(np.float32)
    points[:, 2] = rng.uniform(-3.0, 2.0, 3000)  # some above and below the z range
    points[::97] = np.nan  # no-return markers
    detections = np.column_stack([rng.uniform(-60, 60, (100, 3)), rng.normal(0, 8, (100, 2))])
    pcm = rng.integers(-12000, 12000, 9000, dtype=np.int16)
    return {
        "camera": [
            rng.integers(0, 256, (480, 640, 3), dtype=np.uint8),  # 5x5 blocks
            rng.integers(0, 256, (500, 700, 3), dtype=np.uint8),  # a non-integer scale
        ],
        "lidar": [points, points.astype(np.float64)],
        "radar": [detections.astype(np.float32), detections[:3].astype(np.float32)],  # over and under 64
        "audio": [pcm, rng.standard_normal((8000, 2)).astype(np.float32) * 0.2],  # int16 mono, float stereo
    }


# sha256 of each payload's output arrays (sorted by name, raw bytes concatenated), computed with the
# code before contract v2 (commit 5467763: `git worktree add /tmp/pp-base 5467763`, then
# `preprocess_sample(modality, payload)` over _payloads_for_digests() with PYTHONPATH=/tmp/pp-base).
# The camera's are those of tools/preprocess_reference.py: the package's camera resize is OpenCV's since
# issue 16, whose float32 sums round differently (not bitwise; within CAMERA_TOLERANCE of the reference,
# the test after this one), so the digests pin the reference it is held to.
DEFAULT_DIGESTS = {
    "camera": [
        "0e253c359023468f3ead5d4c289b63e4bcee85075541df317cdc0153a24796b1",
        "926e7bb2d0ff728134afef9deb35aebc257787869fe0154bc176b7a6061f6cbb",
    ],
    "lidar": [
        "e03c4463329d9a61b9ac400dccbe1e33ea6ebc41181390ffa58f71dec086eb3d",
        "e03c4463329d9a61b9ac400dccbe1e33ea6ebc41181390ffa58f71dec086eb3d",  # float64: the same grid
    ],
    "radar": [
        "4a9fc9e3e7e79334c84881e5c14f1a7a8872cc09584191af161191c0befd4319",
        "28bd3e6ad19b4e7fc27757dfed5f2f3729908f67411472f68e06e5e614733071",
    ],
    "audio": [
        "bfdd5fe5f5ab47d0152a75f56a0a3071ab8d8bfc93789af3ef9cf80304d51d49",
        "d666ed1d525065cc2abae34e9180812132427931cb3fee1a8dceaecf510b3a5e",
    ],
}


def test_the_default_params_give_bitwise_the_outputs_of_the_front_end_before_contract_v2() -> None:
    contract = default_contract()
    for modality, cases in _payloads_for_digests().items():
        prepare = preprocessor_for(contract.input(modality))
        if modality == "camera":
            prepare = lambda image: {"camera": camera_separable_taps(image, CAMERA)}  # noqa: E731
        digests = []
        for payload in cases:
            out = prepare(payload)
            digests.append(hashlib.sha256(b"".join(out[name].tobytes() for name in sorted(out))).hexdigest())
        assert digests == DEFAULT_DIGESTS[modality], modality


# -- camera ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["CHW", "HWC"])
@pytest.mark.parametrize("size_hw", [(96, 128), (224, 224), (7, 3)])
def test_camera_is_the_numpy_front_end_within_tolerance_area_and_bitwise_nearest(
    size_hw: tuple[int, int], layout: str, payloads: dict[str, np.ndarray]
) -> None:
    """OpenCV's area resize against the separable-taps numpy code it replaced (tools/preprocess_reference.py),
    over integer and non-integer scale factors; nearest is still a numpy gather, the same bits."""
    images = [*_payloads_for_digests()["camera"], payloads["camera"], payloads["camera"][1:, 3:]]
    for image in images:
        area = CameraParams(size_hw=size_hw, layout=layout)
        difference = np.abs(preprocess_camera(image, area) - camera_separable_taps(image, area)).max()
        assert difference <= CAMERA_TOLERANCE, (image.shape, difference)
        nearest = CameraParams(size_hw=size_hw, resize="nearest", layout=layout)
        np.testing.assert_array_equal(
            preprocess_camera(image, nearest), camera_separable_taps(image, nearest)
        )


def _normalised(pixels: np.ndarray, params: CameraParams = CAMERA) -> np.ndarray:
    """(..., 3) values in 0..255 -> CHW, scaled and normalised as the params say."""
    mean, std = np.array(params.mean), np.array(params.std)
    return ((pixels * params.scale - mean) / std).transpose(2, 0, 1)


def test_camera_area_resize_matches_block_means() -> None:
    image = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    blocks = image.reshape(96, 5, 128, 5, 3).astype(np.float64).mean(axis=(1, 3))
    np.testing.assert_allclose(preprocess_camera(image), _normalised(blocks), atol=1e-5)


def test_camera_non_integer_scale_averages_by_covered_area() -> None:
    image = np.zeros((500, 700, 3), np.uint8)
    image[:, 352:] = 255  # black left of x = 352, white from there
    out = preprocess_camera(image)
    white, black = _normalised(np.full((1, 1, 3), 255.0))[:, 0], _normalised(np.zeros((1, 1, 3)))[:, 0]
    np.testing.assert_allclose(out[:, :, 65:], np.broadcast_to(white[..., None], (3, 96, 63)), atol=1e-5)
    np.testing.assert_allclose(out[:, :, :64], np.broadcast_to(black[..., None], (3, 96, 64)), atol=1e-5)
    # Cell 64 spans x in [350, 355.47): 3.47 of its 5.47 pixels are white.
    covered = (700 / 128 * 65 - 352) / (700 / 128)
    np.testing.assert_allclose(
        out[:, :, 64], np.broadcast_to(black + covered * (white - black), (3, 96)), atol=1e-5
    )


def area_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in): output cell i is the mean of the input interval [i, i + 1) * n_in / n_out, each input
    cell weighted by the length it shares with it; written cell by cell, apart from preprocess/camera.py."""
    step = n_in / n_out
    matrix = np.zeros((n_out, n_in))
    for i in range(n_out):
        lo, hi = i * step, (i + 1) * step
        for j in range(math.floor(lo), min(n_in, math.ceil(hi))):
            matrix[i, j] = min(hi, j + 1) - max(lo, j)
    return matrix / step


def test_a_224x224_camera_input_comes_from_the_same_function_as_an_area_average() -> None:
    params = CameraParams(size_hw=(224, 224))
    prepare = preprocessor_for(_input("camera_wide", params))
    image = np.random.default_rng(5).integers(0, 256, (500, 700, 3), dtype=np.uint8)
    out = prepare(image)["camera_wide"]
    assert out.shape == (3, 224, 224) and out.dtype == np.float32
    np.testing.assert_array_equal(out, preprocess_camera(image, params))
    rows = np.einsum("oh,hwc->owc", area_matrix(500, 224), image.astype(np.float64))
    resized = np.einsum("owc,pw->opc", rows, area_matrix(700, 224))
    np.testing.assert_allclose(out, _normalised(resized, params), atol=1e-4)


def test_camera_hwc_layout_is_the_chw_tensor_transposed() -> None:
    image = np.random.default_rng(6).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    hwc = preprocessor_for(_input("camera", CameraParams(layout="HWC")))(image)["camera"]
    assert hwc.shape == (96, 128, 3) and hwc.flags.c_contiguous
    np.testing.assert_array_equal(hwc, preprocess_camera(image).transpose(1, 2, 0))


def test_camera_nearest_resize_takes_the_pixel_under_each_cells_centre() -> None:
    image = np.random.default_rng(7).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    params = CameraParams(resize="nearest")
    out = preprocessor_for(_input("camera", params))(image)["camera"]
    # 5x5 pixels per cell: the centre of cell (r, c) is at (5r + 2.5, 5c + 2.5), in pixel (5r + 2, 5c + 2).
    np.testing.assert_allclose(out, _normalised(image[2::5, 2::5].astype(np.float64), params), atol=1e-5)


# -- lidar ----------------------------------------------------------------------------------------------


def bev_by_loop(points: np.ndarray, params: LidarParams = LIDAR) -> np.ndarray:
    """A direct, point-by-point reading of the BEV definition in preprocess/lidar.py's docstring."""
    (x0, x1), (y0, y1), (z0, z1) = params.x_range_m, params.y_range_m, params.z_range_m
    rows, cols = round((x1 - x0) / params.cell_m), round((y1 - y0) / params.cell_m)
    count = np.zeros((rows, cols))
    height = np.zeros((rows, cols))
    intensity = np.zeros((rows, cols))
    for x, y, z, i in points.tolist():
        if not (x0 <= x < x1 and y0 <= y < y1 and z0 <= z <= z1):
            continue
        r, c = int((x - x0) / params.cell_m), int((y - y0) / params.cell_m)
        count[r, c] += 1
        height[r, c] = max(height[r, c], (z - z0) / (z1 - z0))
        intensity[r, c] += i
    channels = {
        "occupancy": np.minimum(np.log1p(count) / math.log1p(params.occupancy_saturation), 1.0),
        "max_height": height,
        "mean_intensity": intensity / np.maximum(count, 1),
    }
    return np.stack([channels[name] for name in params.channels])


def test_lidar_bev_matches_a_point_by_point_loop(payloads: dict[str, np.ndarray]) -> None:
    points = payloads["lidar"][::20]  # every 20th point keeps the Python loop quick
    np.testing.assert_allclose(preprocess_lidar(points), bev_by_loop(points), atol=1e-5)


def test_lidar_with_another_grid_and_a_channel_subset(payloads: dict[str, np.ndarray]) -> None:
    params = LidarParams(
        x_range_m=(0.0, 32.0), y_range_m=(-16.0, 16.0), cell_m=0.5, channels=("max_height", "occupancy")
    )
    assert params.shape == (2, 64, 64)
    points = payloads["lidar"][::20]
    out = preprocessor_for(_input("lidar_near", params))(points)["lidar_near"]
    assert out.shape == (2, 64, 64) and out.dtype == np.float32
    expected = bev_by_loop(points, params)
    assert expected[1].any()  # the world's points do fall into the smaller grid
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_lidar_bev_cells_and_ignored_points() -> None:
    points = np.array(
        [
            [10.5, 0.5, -1.0, 0.4],  # row 10, column 32
            [10.2, 0.9, -0.5, 0.8],  # same cell, higher
            [-1.0, 0.0, -1.0, 1.0],  # behind: outside the grid
            [10.5, 0.5, 5.0, 1.0],  # above z range
            [np.nan, np.nan, np.nan, 0.0],  # no return
            [10.5, 0.5, -1.0, np.nan],  # in the cell, but its intensity is not a number
            [10.5, 0.5, -1.0, np.inf],
        ],
        np.float32,
    )
    bev = preprocess_lidar(points)
    assert np.count_nonzero(bev[0]) == 1
    assert bev[0, 10, 32] == pytest.approx(math.log1p(2) / math.log1p(16))
    assert bev[1, 10, 32] == pytest.approx((-0.5 + 2.5) / 4.0)
    assert bev[2, 10, 32] == pytest.approx(0.6)


def test_lidar_empty_cloud_gives_an_empty_grid() -> None:
    assert not preprocess_lidar(np.zeros((0, 4), np.float32)).any()


# -- radar ----------------------------------------------------------------------------------------------


def _detections(n: int, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.uniform(-60, 60, (n, 3)), rng.normal(0, 5, (n, 2))], 1).astype(np.float32)


def test_radar_keeps_the_nearest_64_in_range_order_whatever_the_input_order() -> None:
    detections = _detections(100)
    out, mask = preprocess_radar(detections)
    shuffled = detections[np.random.default_rng(4).permutation(100)]
    shuffled_out, shuffled_mask = preprocess_radar(shuffled)
    np.testing.assert_array_equal(out, shuffled_out)
    np.testing.assert_array_equal(mask, shuffled_mask)
    assert mask.sum() == 64
    ranges = np.linalg.norm(detections[:, :3], axis=1)
    nearest = detections[np.argsort(ranges)[:64]] / np.array(RADAR.scale, np.float32)
    np.testing.assert_allclose(out, nearest, rtol=1e-6)


def test_radar_with_32_slots_keeps_the_nearest_32() -> None:
    params = RadarParams(slots=32)
    detections = _detections(50)
    out = preprocessor_for(_input("radar_rear", params, mask="radar_rear_mask"))(detections)
    assert {name: a.shape for name, a in out.items()} == {"radar_rear": (32, 5), "radar_rear_mask": (32,)}
    ranges = np.linalg.norm(detections[:, :3], axis=1)
    nearest = detections[np.argsort(ranges)[:32]] / np.array(params.scale, np.float32)
    np.testing.assert_allclose(out["radar_rear"], nearest, rtol=1e-6)
    assert out["radar_rear_mask"].sum() == 32


def test_radar_pads_few_detections_and_drops_non_finite_rows() -> None:
    detections = np.array([[20, 1, 0, -3, 10], [5, 0, 0, 1, -5], [np.nan, 0, 0, 0, 0]], np.float32)
    out, mask = preprocess_radar(detections)
    np.testing.assert_array_equal(mask[:3], [1, 1, 0])
    assert not out[2:].any() and not mask[2:].any()
    np.testing.assert_allclose(out[0] * RADAR.scale, [5, 0, 0, 1, -5], rtol=1e-6)


# -- audio ----------------------------------------------------------------------------------------------


def reference_mel_filters(params: AudioParams = AUDIO) -> torch.Tensor:
    """HTK-mel triangles from 0 Hz to Nyquist written bin by bin, independently of preprocess/audio.py."""

    def mel(f: float) -> float:
        return 2595.0 * math.log10(1.0 + f / 700.0)

    n_mels, n_fft, rate = params.n_mels, params.n_fft, params.sample_rate
    top = mel(rate / 2)
    peaks = [700.0 * (10 ** (top * k / (n_mels + 1) / 2595.0) - 1.0) for k in range(n_mels + 2)]
    n_bins = n_fft // 2 + 1
    fb = torch.zeros(n_mels, n_bins, dtype=torch.float64)
    for m in range(n_mels):
        left, centre, right = peaks[m], peaks[m + 1], peaks[m + 2]
        for b in range(n_bins):
            f = b * rate / n_fft
            if left < f <= centre:
                fb[m, b] = (f - left) / (centre - left)
            elif centre < f < right:
                fb[m, b] = (right - f) / (right - centre)
    return fb


def torch_log_mel(samples: np.ndarray, params: AudioParams = AUDIO) -> np.ndarray:
    """int16 samples -> the log-mel torch.stft and the reference filters give."""
    x = torch.from_numpy(samples.astype(np.float64) / 32768.0)
    spec = torch.stft(
        x,
        n_fft=params.n_fft,
        hop_length=params.hop,
        window=torch.hann_window(params.n_fft, periodic=True, dtype=torch.float64),
        center=False,
        return_complex=True,
    )
    return torch.log(reference_mel_filters(params) @ spec.abs() ** 2 + 1e-6)[None].numpy()


def test_log_mel_matches_torch_stft_with_independent_filters(payloads: dict[str, np.ndarray]) -> None:
    samples = payloads["audio"]
    expected = torch_log_mel(samples)
    out = preprocess_audio(samples)
    assert out.shape == expected.shape == (1, 40, 48)
    np.testing.assert_allclose(out, expected, atol=2e-3, rtol=1e-4)


def test_audio_with_64_mels_matches_torch_stft_with_independent_filters(
    payloads: dict[str, np.ndarray],
) -> None:
    params = AudioParams(n_mels=64)
    out = preprocessor_for(_input("audio_64", params))(payloads["audio"])["audio_64"]
    assert out.shape == (1, 64, 48)
    np.testing.assert_allclose(out, torch_log_mel(payloads["audio"], params), atol=2e-3, rtol=1e-4)


def test_log_mel_sees_a_tone_in_the_right_band() -> None:
    t = np.arange(8000) / AUDIO.sample_rate
    out = preprocess_audio((0.5 * np.sin(2 * np.pi * 1000.0 * t)).astype(np.float32))
    expected_band = int(reference_mel_filters()[:, round(1000 * AUDIO.n_fft / AUDIO.sample_rate)].argmax())
    assert int(np.argmax(out[0].mean(axis=1))) == expected_band


def test_audio_int16_float_and_stereo_agree_and_older_samples_are_ignored() -> None:
    rng = np.random.default_rng(1)
    pcm = rng.integers(-8000, 8000, 9000, dtype=np.int16)
    as_float = (pcm / 32768.0).astype(np.float32)
    np.testing.assert_allclose(preprocess_audio(pcm), preprocess_audio(as_float[-8000:]), atol=1e-4)
    stereo = np.stack([as_float, as_float], axis=1)
    np.testing.assert_allclose(preprocess_audio(stereo), preprocess_audio(as_float), atol=1e-5)


def _log_mel_by_the_book(samples: np.ndarray, params: AudioParams = AUDIO) -> np.ndarray:
    """The log-mel as written before its fast path (sliding_window_view, a mean over any channels)."""
    from fusion_pipeline.preprocess.audio import _window, mel_filterbank

    x = samples[-params.window_samples :].astype(np.float32)
    x = x.mean(axis=1) if x.ndim == 2 else x
    frames = np.lib.stride_tricks.sliding_window_view(x, params.n_fft)[:: params.hop]
    power = np.abs(np.fft.rfft(frames * _window(params.n_fft), axis=1)) ** 2
    mel = power.astype(np.float32) @ mel_filterbank(params).T
    return np.log(mel + np.float32(1e-6)).T[None].astype(np.float32)


@pytest.mark.parametrize("params", [AUDIO, AudioParams(window_s=0.25, n_fft=256, hop=100, n_mels=32)])
@pytest.mark.parametrize("channels", [None, 1, 2])
def test_the_log_mel_fast_path_is_bitwise_the_plain_one(params: AudioParams, channels: int | None) -> None:
    """A strided view instead of sliding_window_view and one channel taken as it is change no bit."""
    rng = np.random.default_rng(channels or 0)
    shape = (params.window_samples + 123,) + (() if channels is None else (channels,))
    samples = (rng.standard_normal(shape) * 0.1).astype(np.float32)
    assert np.array_equal(preprocess_audio(samples, params), _log_mel_by_the_book(samples, params))


# -- bad input ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("modality", "payload", "message"),
    [
        (
            "camera",
            np.zeros((480, 640, 3), np.float32),
            "camera: image dtype must be one of uint8, got float32",
        ),
        ("camera", np.zeros((480, 640), np.uint8), r"camera: image must be 3-D, got shape \(480, 640\)"),
        ("camera", np.zeros((480, 640, 4), np.uint8), r"camera: image must end in \.\.\.x3"),
        (
            "camera",
            np.zeros((48, 64, 3), np.uint8),
            "camera: image 48x64 is smaller than the model input 96x128",
        ),
        (
            "lidar",
            np.zeros((100, 3), np.float32),
            r"lidar: points must end in \.\.\.x4, got shape \(100, 3\)",
        ),
        (
            "lidar",
            np.zeros((100, 4), np.int32),
            "lidar: points dtype must be one of float32, float64, got int32",
        ),
        ("radar", np.zeros(5, np.float32), r"radar: detections must be 2-D, got shape \(5,\)"),
        ("audio", np.zeros(7999, np.int16), r"audio: need at least 8000 samples"),
        ("audio", np.zeros(8000, np.uint8), "audio: samples dtype"),
        ("audio", [0.0] * 8000, "audio: samples must be a numpy array, got list"),
    ],
)
def test_bad_input_is_rejected_with_a_clear_error(modality: str, payload: object, message: str) -> None:
    prepare = preprocessor_for(default_contract().input(modality))
    with pytest.raises(PreprocessError, match=message) as info:
        prepare(payload)  # type: ignore[arg-type]
    assert isinstance(info.value, FusionError)
    assert info.value.modality == modality


# -- parameters a model may ask for ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            InputSpec("camera", "camera", (3, 96, 128), {"gamma": 2.2}),
            "camera: input 'camera': preprocess.gamma: unknown parameter "
            "(known: input, size_hw, resize, scale, mean, std, layout)",
        ),
        (
            InputSpec("audio", "audio", (1, 40, 48), {"mel_scale": "slaney"}),
            "audio: input 'audio': preprocess.mel_scale = 'slaney': the pipeline implements only 'htk'",
        ),
        (
            InputSpec("radar", "radar", (64, 5), {"order": "rcs descending"}, mask="radar_mask"),
            "radar: input 'radar': preprocess.order = 'rcs descending': the pipeline implements only "
            "'range ascending, stable; nearest kept when M > slots'",
        ),
        (
            InputSpec("lidar", "lidar", (3, 64, 64), {"cell_m": "1"}),
            "lidar: input 'lidar': preprocess.cell_m must be a float, got '1'",
        ),
        (
            InputSpec("camera", "camera", (3, 224, 224), CAMERA.to_dict()),
            "camera: input 'camera': the model wants shape (3, 224, 224), its preprocess parameters give "
            "(3, 96, 128)",
        ),
        (
            InputSpec("sonar", "sonar", (3,)),
            "sonar: input 'sonar': unknown modality; known: camera, lidar, radar, audio, generic",
        ),
    ],
)
def test_parameters_the_pipeline_does_not_implement_are_refused_by_name(
    spec: InputSpec, message: str
) -> None:
    with pytest.raises(PreprocessError) as info:
        preprocessor_for(spec)
    assert str(info.value) == message


def test_a_missing_key_takes_its_default_and_an_int_passes_as_a_float() -> None:
    assert LidarParams.from_dict({"occupancy_saturation": 16}) == LIDAR
    assert CameraParams.from_dict({}) == CAMERA
    assert AudioParams.from_dict({"n_mels": 64}).shape == (1, 64, 48)
