"""Bindings (issue 14, item 2): which config stream feeds which model input, and the exact message of every
config the check at start refuses."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from config_text import stream_table

from fusion_pipeline.binding import bind
from fusion_pipeline.config import Config, parse_config
from fusion_pipeline.contract import InputSpec, ModelContract, default_contract
from fusion_pipeline.errors import ContractError
from fusion_pipeline.preprocess import CameraParams, RadarParams
from fusion_pipeline.sync import SyncStage
from fusion_pipeline.transport import Sample

DEFAULT = default_contract()
CAMERA = CameraParams()
T0 = 10**18


def _config(*streams: str, model: str = "", sync: str = 'mode = "approximate"') -> Config:
    return parse_config("".join(streams) + f"[sync]\n{sync}\n[model]\n{model}\n")


DEMO_STREAMS = (
    stream_table("camera/front", "camera"),
    stream_table("lidar/top", "lidar"),
    stream_table("radar/front", "radar"),
    stream_table("audio/roof", "audio"),
)


def _cameras(*names: str, lidar: str = "lidar") -> ModelContract:
    """A model with one camera input per name (the default front end) and the default lidar input."""
    cameras = tuple(InputSpec(n, "camera", CAMERA.shape, CAMERA.to_dict()) for n in names)
    inputs = (*cameras, replace(DEFAULT.input("lidar"), name=lidar))
    return ModelContract(inputs, DEFAULT.outputs, presence_order=tuple(s.name for s in inputs))


def _refused(config: Config, contract: ModelContract, *problems: str) -> None:
    """bind refuses, its message listing exactly `problems`."""
    with pytest.raises(ContractError) as err:
        bind(config, contract, "model m.onnx")
    assert str(err.value) == "model m.onnx does not fit the config:\n" + "\n".join(f"  {p}" for p in problems)


# -- what binds -----------------------------------------------------------------------------------------


def test_the_demo_streams_feed_the_default_inputs_of_their_modality() -> None:
    bindings = bind(_config(*DEMO_STREAMS), DEFAULT)
    assert {name: (b.input.name, b.bit) for name, b in bindings.by_stream.items()} == {
        "camera/front": ("camera", 0),
        "lidar/top": ("lidar", 1),
        "radar/front": ("radar", 2),
        "audio/roof": ("audio", 3),
    }
    assert bindings.contract.modalities == ["camera", "lidar", "radar", "audio"]
    assert bindings.of("camera/front").prepare.params == CAMERA
    assert bindings.of("radar/front").prepare.mask == "radar_mask"


def test_a_stream_binds_by_its_input_key_its_name_its_slug_or_as_the_only_one_of_its_modality() -> None:
    contract = _cameras("camera/front", "camera_rear", "wide", lidar="bev")
    contract = replace(contract, presence_order=("bev", "wide", "camera_rear", "camera/front"))
    config = _config(
        stream_table("camera/front", "camera"),  # its name
        stream_table("camera/rear", "camera"),  # its slug, camera_rear
        stream_table("camera/side", "camera", 'input = "wide"'),  # its input key
        stream_table("lidar/top", "lidar"),  # the model's only lidar input, the config's only lidar stream
    )
    bindings = bind(config, contract)
    assert {name: (b.input.name, b.bit) for name, b in bindings.by_stream.items()} == {
        "camera/front": ("camera/front", 3),
        "camera/rear": ("camera_rear", 2),
        "camera/side": ("wide", 1),
        "lidar/top": ("bev", 0),
    }
    assert bindings.contract.modalities == ["lidar", "camera", "camera", "camera"]


def test_the_input_key_wins_over_a_stream_named_like_another_input() -> None:
    config = _config(
        stream_table("camera_a", "camera", 'input = "camera_b"'),
        stream_table("camera_b", "camera", 'input = "camera_a"'),
        stream_table("lidar/top", "lidar"),
    )
    bindings = bind(config, _cameras("camera_a", "camera_b"))
    assert (
        bindings.of("camera_a").input.name == "camera_b" and bindings.of("camera_b").input.name == "camera_a"
    )


def test_an_unbound_input_listed_in_the_config_is_always_absent_in_the_sets() -> None:
    config = _config(
        *DEMO_STREAMS[:3],
        model='unbound_inputs = ["audio"]',
        sync='reference = "lidar/top"\nmax_wait_ms = 60',
    )
    bindings = bind(config, DEFAULT)
    assert set(bindings.by_stream) == {"camera/front", "lidar/top", "radar/front"}
    stage = SyncStage(config, bindings)
    radar = {"radar": np.zeros((64, 5), np.float32), "radar_mask": np.zeros(64, np.float32)}
    camera = Sample("camera/front", "camera", 0, T0, {"camera": np.zeros(CAMERA.shape, np.float32)})
    assert stage.add(camera, T0) == [] and stage.add(Sample("radar/front", "radar", 0, T0, radar), T0) == []
    lidar = Sample("lidar/top", "lidar", 0, T0, {"lidar": np.zeros((3, 64, 64), np.float32)})
    (message,) = stage.add(lidar, T0)  # every bound stream is in: nothing waits for the unbound input
    assert message.meta["presence"] == [1, 1, 1, 0]
    assert message.meta["inputs"] == ["camera", "lidar", "radar", "audio"]
    assert message.meta["streams"] == ["camera/front", "lidar/top", "radar/front", ""]
    assert set(message.arrays) == {"camera", "lidar", "radar", "radar_mask"}


# -- what is refused, and how it is said ----------------------------------------------------------------


def test_a_required_input_without_a_stream_is_refused() -> None:
    _refused(
        _config(*DEMO_STREAMS[:3]),
        DEFAULT,
        "model input 'audio' (audio, shape (1, 40, 48)) has no stream: bind one with streams[].input, or "
        "list it in model.unbound_inputs to run with it always absent",
    )


def test_unbound_inputs_must_name_an_input_no_stream_feeds() -> None:
    _refused(
        _config(*DEMO_STREAMS, model='unbound_inputs = ["sonar", "audio"]'),
        DEFAULT,
        "model.unbound_inputs[0]: 'sonar' is not an input of the model (inputs: ['camera', 'lidar', 'radar', "
        "'audio'])",
        "model.unbound_inputs[1]: 'audio' is fed by streams[3]",
    )


def test_a_stream_bound_to_an_input_of_another_modality_is_refused() -> None:
    config = _config(
        stream_table("camera/front", "camera"),
        stream_table("radar/front", "radar", 'input = "lidar"'),
        model='unbound_inputs = ["radar", "audio"]',
    )
    _refused(config, DEFAULT, "streams[1].input: stream 'radar/front' is radar, model input 'lidar' is lidar")


def test_two_streams_on_one_input_are_refused() -> None:
    front = stream_table("camera/front", "camera", 'input = "camera"')
    config = _config(front, *DEMO_STREAMS[1:], stream_table("camera/rear", "camera", 'input = "camera"'))
    _refused(
        config,
        DEFAULT,
        "streams[4].input: model input 'camera' is already fed by streams[0] ('camera/front'); one stream "
        "per input",
    )


def test_a_contract_its_front_ends_cannot_serve_is_refused_as_it_is_made() -> None:
    """A shape the preprocessing cannot produce, a parameter the pipeline lacks: refused when the contract
    is made (export_model, `model info`), not only when a config is bound to it."""
    with pytest.raises(ContractError) as refused:
        replace(DEFAULT, inputs=(replace(DEFAULT.inputs[0], shape=(3, 224, 224)), *DEFAULT.inputs[1:]))
    assert (
        "inputs.camera.preprocess: input 'camera': the model wants shape (3, 224, 224), its preprocess "
        "parameters give (3, 96, 128)"
    ) in str(refused.value)
    radar = replace(DEFAULT.input("radar"), preprocess={**RadarParams().to_dict(), "doppler_bins": 8})
    with pytest.raises(ContractError) as refused:
        replace(DEFAULT, inputs=(*DEFAULT.inputs[:2], radar, DEFAULT.inputs[3]))
    assert (
        "inputs.radar.preprocess: input 'radar': preprocess.doppler_bins: unknown parameter (known: input, "
        "order, slots, scale)"
    ) in str(refused.value)


def test_an_input_key_naming_no_model_input_is_refused() -> None:
    config = _config(stream_table("camera/front", "camera", 'input = "camera_left"'), *DEMO_STREAMS[1:])
    _refused(
        config,
        DEFAULT,
        "streams[0].input: 'camera_left' is not an input of the model (inputs: ['camera', 'lidar', 'radar', "
        "'audio'])",
        "model input 'camera' (camera, shape (3, 96, 128)) has no stream: bind one with streams[].input, or "
        "list it in model.unbound_inputs to run with it always absent",
    )


def test_streams_no_name_or_single_input_binds_are_refused_asking_for_their_input_key() -> None:
    config = _config(
        stream_table("camera/a", "camera"),
        stream_table("camera/b", "camera"),
        stream_table("lidar/top", "lidar"),
    )
    no_input = (
        "has no stream: bind one with streams[].input, or list it in model.unbound_inputs to run with it "
        "always absent"
    )
    _refused(
        config,
        _cameras("camera_left", "camera_right"),
        "streams[0] ('camera/a'): no model input is named 'camera/a' or 'camera_a', and the model has 2 "
        "camera inputs (['camera_left', 'camera_right']) for 2 camera streams: set streams[0].input",
        "streams[1] ('camera/b'): no model input is named 'camera/b' or 'camera_b', and the model has 2 "
        "camera inputs (['camera_left', 'camera_right']) for 2 camera streams: set streams[1].input",
        f"model input 'camera_left' (camera, shape (3, 96, 128)) {no_input}",
        f"model input 'camera_right' (camera, shape (3, 96, 128)) {no_input}",
    )


def test_two_streams_of_a_modality_for_its_one_input_are_refused() -> None:
    """Without input keys, the demo model's one camera input cannot take a second camera."""
    config = _config(*DEMO_STREAMS, stream_table("camera/rear", "camera"))
    problem = (
        "no model input is named {0!r} or {1!r}, and the model has 1 camera input (['camera']) for 2 camera "
        "streams: set streams[{2}].input"
    )
    _refused(
        config,
        DEFAULT,
        f"streams[0] ('camera/front'): {problem.format('camera/front', 'camera_front', 0)}",
        f"streams[4] ('camera/rear'): {problem.format('camera/rear', 'camera_rear', 4)}",
        "model input 'camera' (camera, shape (3, 96, 128)) has no stream: bind one with streams[].input, or "
        "list it in model.unbound_inputs to run with it always absent",
    )


def test_a_stream_of_a_modality_the_model_lacks_is_refused_saying_to_remove_it() -> None:
    """The model takes no audio: naming an input for the audio stream (what the message asked) cannot
    help."""
    config = _config(
        stream_table("camera/front", "camera"), stream_table("lidar/top", "lidar"), DEMO_STREAMS[3]
    )
    _refused(
        config,
        _cameras("camera"),
        "streams[2] ('audio/roof'): no model input is named 'audio/roof' or 'audio_roof', and the model "
        "has 0 audio inputs ([]) for 1 audio stream: remove the stream, or run a model that takes it",
    )


def test_an_audio_stream_at_another_sample_rate_is_refused() -> None:
    config = _config(*DEMO_STREAMS[:3], stream_table("audio/roof", "audio").replace("16000", "48000"))
    _refused(config, DEFAULT, "streams[3].sample_rate: 48000 Hz, model input 'audio' takes 16000 Hz")


def test_an_audio_window_shorter_than_the_input_is_refused() -> None:
    config = _config(*DEMO_STREAMS, sync='mode = "approximate"\naudio_window_ms = 400')
    _refused(config, DEFAULT, "sync.audio_window_ms = 400: model input 'audio' needs 500 ms")
