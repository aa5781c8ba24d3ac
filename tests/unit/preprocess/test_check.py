"""InputPreprocessor.check: it refuses exactly what the front end refuses, with the same error, and
computes nothing; the deferred front end built on it (the offline graph and the composed node run the
arithmetic only for the frames a set takes)."""

from __future__ import annotations

import numpy as np
import pytest

from fusion_pipeline.contract import InputSpec, default_contract
from fusion_pipeline.preprocess import CameraParams, PreprocessError, preprocessor_for
from fusion_pipeline.preprocess.deferred import DEFERRED_MODALITIES, DeferredFrontEnd, resolve
from fusion_pipeline.sim import World

SECOND = 1_000_000_000


def _refusal(call, payload: np.ndarray) -> str | None:
    try:
        call(payload)
    except PreprocessError as exc:
        return str(exc)
    return None


def _payloads() -> dict[str, list[np.ndarray]]:
    """Per modality: payloads of every kind the front end takes or refuses."""
    world = World(7)
    t = 1_300_000_000
    camera, lidar, radar = world.camera(t), world.lidar(t), world.radar(t)
    audio = world.audio(t - SECOND // 2, 8000, dtype="int16")
    return {
        "camera": [
            camera,
            camera[:95],
            camera[:, :127],
            camera[..., :2],
            camera.astype(np.float32),
            camera[0],
        ],
        "lidar": [
            lidar,
            lidar.astype(np.float64),
            lidar[:, :3],
            lidar[None],
            lidar.astype(np.int32),
            lidar[:0],
        ],
        "radar": [radar, radar[:0], radar[:, :4], radar.astype(np.int64), np.zeros((300, 5), np.float32)],
        "audio": [audio, audio[:7999], audio.astype(np.float32), audio[:, None], audio.astype(np.uint8)],
    }


@pytest.mark.parametrize("spec", default_contract().inputs, ids=lambda s: s.name)
def test_check_refuses_what_the_front_end_refuses(spec: InputSpec) -> None:
    prepare = preprocessor_for(spec)
    outcomes = []
    for payload in _payloads()[spec.modality]:
        refused = _refusal(prepare, payload)
        assert _refusal(prepare.check, payload) == refused
        if refused is None:  # what passes the checks gives the contract input's tensors
            assert {name: (a.dtype, a.shape) for name, a in prepare(payload).items()} == {
                name: (np.dtype(np.float32), shape) for name, shape in spec.tensors.items()
            }
        outcomes.append(refused is None)
    assert outcomes[0] and not all(outcomes)  # the cases cover both


def test_check_follows_the_parameters() -> None:
    params = CameraParams(size_hw=(224, 224))
    prepare = preprocessor_for(InputSpec("camera_wide", "camera", params.shape, params.to_dict()))
    image = np.zeros((200, 640, 3), np.uint8)  # high enough for 96 rows, not for 224
    with pytest.raises(PreprocessError, match="smaller than the model input 224x224"):
        prepare.check(image)
    prepare.check(np.zeros((224, 640, 3), np.uint8))


class _Counting:
    """A front end that counts its calls (the deferred one must call it once per frame, and only when
    a tensor of the frame is wanted)."""

    def __init__(self, spec: InputSpec) -> None:
        self.prepare, self.calls = preprocessor_for(spec), 0

    def __call__(self, payload: np.ndarray) -> dict[str, np.ndarray]:
        self.calls += 1
        return self.prepare(payload)

    def check(self, payload: np.ndarray) -> None:
        self.prepare.check(payload)


@pytest.mark.parametrize(
    "spec", [s for s in default_contract().inputs if s.modality in DEFERRED_MODALITIES], ids=lambda s: s.name
)
def test_a_deferred_front_end_refuses_at_once_and_computes_once_when_asked(spec: InputSpec) -> None:
    front_end = _Counting(spec)
    deferred = DeferredFrontEnd(front_end, spec.tensors)  # type: ignore[arg-type]
    for payload in _payloads()[spec.modality]:
        refused = _refusal(front_end.prepare, payload)
        assert _refusal(deferred, payload) == refused  # refused on arrival, with the same error
        if refused is not None:
            continue
        calls = front_end.calls
        tensors = deferred(payload)
        assert {n: (t.dtype, t.shape) for n, t in tensors.items()} == {
            n: (np.dtype(np.float32), shape) for n, shape in spec.tensors.items()
        }
        assert front_end.calls == calls  # nothing computed until a set wants it
        computed = resolve({**tensors, "other": np.ones(2)})
        assert front_end.calls == calls + 1  # once for all of the frame's tensors (radar: two)
        expected = front_end.prepare(payload)
        assert set(computed) == {*expected, "other"}
        assert all(np.array_equal(computed[n], expected[n]) for n in expected)  # the same arithmetic
