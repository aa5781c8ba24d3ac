"""Preprocessing: contract shapes and dtypes, determinism, reference implementations, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fusion_pipeline.contract import (
    AUDIO_HOP,
    AUDIO_N_FFT,
    AUDIO_N_MELS,
    AUDIO_SAMPLE_RATE,
    ModelContract,
    default_contract,
)
from fusion_pipeline.errors import FusionError
from fusion_pipeline.preprocess import (
    PARAMS,
    PREPROCESSORS,
    PreprocessError,
    fill_contract,
    preprocess_audio,
    preprocess_camera,
    preprocess_lidar,
    preprocess_radar,
    preprocess_sample,
)
from fusion_pipeline.sim import World

SECOND = 1_000_000_000


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


def test_every_modality_yields_the_contract_inputs(payloads: dict[str, np.ndarray]) -> None:
    contract = default_contract()
    for modality, payload in payloads.items():
        inputs = preprocess_sample(modality, payload)
        specs = contract.inputs_for(modality)
        assert set(inputs) == {s.name for s in specs}
        for spec in specs:
            assert inputs[spec.name].shape == spec.shape
            assert inputs[spec.name].dtype == np.dtype(spec.dtype)
            assert np.isfinite(inputs[spec.name]).all()


def test_preprocessing_is_deterministic_and_leaves_its_input_alone(payloads: dict[str, np.ndarray]) -> None:
    for modality, payload in payloads.items():
        before = payload.copy()
        first, second = preprocess_sample(modality, payload), preprocess_sample(modality, payload)
        for name in first:
            np.testing.assert_array_equal(first[name], second[name])
        np.testing.assert_array_equal(payload, before)


def test_contract_carries_the_parameters_through_json() -> None:
    contract = fill_contract(default_contract("concat"))
    assert contract.input("audio").preprocess["n_fft"] == AUDIO_N_FFT
    assert contract.input("radar_mask").preprocess == PARAMS["radar"]
    assert contract.input("presence").preprocess == {}
    assert ModelContract.from_json(contract.to_json()) == contract
    assert tuple(PREPROCESSORS) == contract.modalities


# -- camera ---------------------------------------------------------------------------------------------


def test_camera_area_resize_matches_block_means() -> None:
    image = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    blocks = image.reshape(96, 5, 128, 5, 3).astype(np.float64).mean(axis=(1, 3)) / 255.0
    mean, std = np.array(PARAMS["camera"]["mean"]), np.array(PARAMS["camera"]["std"])
    expected = ((blocks - mean) / std).transpose(2, 0, 1)
    np.testing.assert_allclose(preprocess_camera(image), expected, atol=1e-5)


def test_camera_non_integer_scale_averages_by_covered_area() -> None:
    image = np.zeros((500, 700, 3), np.uint8)
    image[:, 352:] = 255  # black left of x = 352, white from there
    out = preprocess_camera(image)
    mean, std = np.array(PARAMS["camera"]["mean"])[:, None], np.array(PARAMS["camera"]["std"])[:, None]
    white, black = (1.0 - mean) / std, -mean / std
    np.testing.assert_allclose(out[:, :, 65:], np.broadcast_to(white[..., None], (3, 96, 63)), atol=1e-5)
    np.testing.assert_allclose(out[:, :, :64], np.broadcast_to(black[..., None], (3, 96, 64)), atol=1e-5)
    # Cell 64 spans x in [350, 355.47): 3.47 of its 5.47 pixels are white.
    covered = (700 / 128 * 65 - 352) / (700 / 128)
    np.testing.assert_allclose(
        out[:, :, 64], np.broadcast_to(black + covered * (white - black), (3, 96)), atol=1e-5
    )


# -- lidar ----------------------------------------------------------------------------------------------


def bev_by_loop(points: np.ndarray) -> np.ndarray:
    """A direct, point-by-point reading of the BEV definition in preprocess/lidar.py's docstring."""
    p = PARAMS["lidar"]
    (x0, x1), (y0, y1), (z0, z1) = p["x_range_m"], p["y_range_m"], p["z_range_m"]
    count = np.zeros((64, 64))
    height = np.zeros((64, 64))
    intensity = np.zeros((64, 64))
    for x, y, z, i in points.tolist():
        if not (x0 <= x < x1 and y0 <= y < y1 and z0 <= z <= z1):
            continue
        r, c = int(x - x0), int(y - y0)
        count[r, c] += 1
        height[r, c] = max(height[r, c], (z - z0) / (z1 - z0))
        intensity[r, c] += i
    occupancy = np.minimum(np.log1p(count) / math.log1p(p["occupancy_saturation"]), 1.0)
    return np.stack([occupancy, height, intensity / np.maximum(count, 1)])


def test_lidar_bev_matches_a_point_by_point_loop(payloads: dict[str, np.ndarray]) -> None:
    points = payloads["lidar"][::20]  # every 20th point keeps the Python loop quick
    np.testing.assert_allclose(preprocess_lidar(points), bev_by_loop(points), atol=1e-5)


def test_lidar_bev_cells_and_ignored_points() -> None:
    points = np.array(
        [
            [10.5, 0.5, -1.0, 0.4],  # row 10, column 32
            [10.2, 0.9, -0.5, 0.8],  # same cell, higher
            [-1.0, 0.0, -1.0, 1.0],  # behind: outside the grid
            [10.5, 0.5, 5.0, 1.0],  # above z range
            [np.nan, np.nan, np.nan, 0.0],  # no return
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


def test_radar_keeps_the_nearest_64_in_range_order_whatever_the_input_order() -> None:
    rng = np.random.default_rng(3)
    detections = np.concatenate([rng.uniform(-60, 60, (100, 3)), rng.normal(0, 5, (100, 2))], 1).astype(
        np.float32
    )
    out, mask = preprocess_radar(detections)
    shuffled_out, shuffled_mask = preprocess_radar(detections[rng.permutation(100)])
    np.testing.assert_array_equal(out, shuffled_out)
    np.testing.assert_array_equal(mask, shuffled_mask)
    assert mask.sum() == 64
    ranges = np.linalg.norm(detections[:, :3], axis=1)
    nearest = detections[np.argsort(ranges)[:64]] / np.array(PARAMS["radar"]["scale"], np.float32)
    np.testing.assert_allclose(out, nearest, rtol=1e-6)


def test_radar_pads_few_detections_and_drops_non_finite_rows() -> None:
    detections = np.array([[20, 1, 0, -3, 10], [5, 0, 0, 1, -5], [np.nan, 0, 0, 0, 0]], np.float32)
    out, mask = preprocess_radar(detections)
    np.testing.assert_array_equal(mask[:3], [1, 1, 0])
    assert not out[2:].any() and not mask[2:].any()
    np.testing.assert_allclose(out[0] * PARAMS["radar"]["scale"], [5, 0, 0, 1, -5], rtol=1e-6)


# -- audio ----------------------------------------------------------------------------------------------


def reference_mel_filters() -> torch.Tensor:
    """HTK-mel triangles written bin by bin, independently of preprocess/audio.py."""

    def mel(f: float) -> float:
        return 2595.0 * math.log10(1.0 + f / 700.0)

    top = mel(AUDIO_SAMPLE_RATE / 2)
    peaks = [700.0 * (10 ** (top * k / (AUDIO_N_MELS + 1) / 2595.0) - 1.0) for k in range(AUDIO_N_MELS + 2)]
    n_bins = AUDIO_N_FFT // 2 + 1
    fb = torch.zeros(AUDIO_N_MELS, n_bins, dtype=torch.float64)
    for m in range(AUDIO_N_MELS):
        left, centre, right = peaks[m], peaks[m + 1], peaks[m + 2]
        for b in range(n_bins):
            f = b * AUDIO_SAMPLE_RATE / AUDIO_N_FFT
            if left < f <= centre:
                fb[m, b] = (f - left) / (centre - left)
            elif centre < f < right:
                fb[m, b] = (right - f) / (right - centre)
    return fb


def test_log_mel_matches_torch_stft_with_independent_filters(payloads: dict[str, np.ndarray]) -> None:
    samples = payloads["audio"]
    x = torch.from_numpy(samples.astype(np.float64) / 32768.0)
    spec = torch.stft(
        x,
        n_fft=AUDIO_N_FFT,
        hop_length=AUDIO_HOP,
        window=torch.hann_window(AUDIO_N_FFT, periodic=True, dtype=torch.float64),
        center=False,
        return_complex=True,
    )
    expected = torch.log(reference_mel_filters() @ spec.abs() ** 2 + 1e-6)[None].numpy()
    out = preprocess_audio(samples)
    assert out.shape == expected.shape
    np.testing.assert_allclose(out, expected, atol=2e-3, rtol=1e-4)


def test_log_mel_sees_a_tone_in_the_right_band() -> None:
    t = np.arange(8000) / AUDIO_SAMPLE_RATE
    out = preprocess_audio((0.5 * np.sin(2 * np.pi * 1000.0 * t)).astype(np.float32))
    expected_band = int(reference_mel_filters()[:, round(1000 * AUDIO_N_FFT / AUDIO_SAMPLE_RATE)].argmax())
    assert int(np.argmax(out[0].mean(axis=1))) == expected_band


def test_audio_int16_float_and_stereo_agree_and_older_samples_are_ignored() -> None:
    rng = np.random.default_rng(1)
    pcm = rng.integers(-8000, 8000, 9000, dtype=np.int16)
    as_float = (pcm / 32768.0).astype(np.float32)
    np.testing.assert_allclose(preprocess_audio(pcm), preprocess_audio(as_float[-8000:]), atol=1e-4)
    stereo = np.stack([as_float, as_float], axis=1)
    np.testing.assert_allclose(preprocess_audio(stereo), preprocess_audio(as_float), atol=1e-5)


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
        ("camera", np.zeros((48, 64, 3), np.uint8), "smaller than the model input"),
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
        ("sonar", np.zeros(3), "sonar: unknown modality"),
    ],
)
def test_bad_input_is_rejected_with_a_clear_error(modality: str, payload: object, message: str) -> None:
    with pytest.raises(PreprocessError, match=message) as info:
        preprocess_sample(modality, payload)  # type: ignore[arg-type]
    assert isinstance(info.value, FusionError)
    assert info.value.modality == modality
