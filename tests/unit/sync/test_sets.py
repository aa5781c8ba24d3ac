"""Set messages from FusedSets (PROTOCOL.md section 8), without sockets: layout, presence mask, audio
log-mel computed once when the window is cut, refused inputs. (Configs the model cannot take are refused
when binding: tests/unit/test_binding.py.)"""

from __future__ import annotations

import numpy as np
import pytest
from config_text import stream_table

from fusion_pipeline.binding import bind
from fusion_pipeline.config import Config, parse_config
from fusion_pipeline.contract import InputSpec, ModelContract, default_contract
from fusion_pipeline.preprocess import CameraParams, preprocess_audio
from fusion_pipeline.sync import InputError, SetBuilder, Synchronizer, settings_from_config
from fusion_pipeline.transport import Sample

MS = 1_000_000
T0 = 10**18


def _config(streams: str, model: str = "", sync: str = 'reference = "lidar/top"') -> Config:
    return parse_config(f"{streams}\n[sync]\n{sync}\nmax_wait_ms = 60\n[model]\n{model}\n")


CONFIG = _config(
    stream_table("camera/front", "camera")
    + stream_table("lidar/top", "lidar", "required = true")
    + stream_table("audio/roof", "audio"),
    model='unbound_inputs = ["radar"]',  # the demo model without its radar: always absent
)
BINDINGS = bind(CONFIG, default_contract())


def _ingest(stream: str, modality: str, stamp: int, **arrays: np.ndarray) -> Sample:
    meta = {"stages": {"ingest_in": stamp + 1, "ingest_out": stamp + 2}}
    if modality == "audio":
        meta = {"sample_rate": 16000}
    return Sample(stream, modality, 0, stamp, arrays, "", meta)


def test_sets_carry_present_inputs_mask_and_a_log_mel_cut_when_the_window_was() -> None:
    builder = SetBuilder(CONFIG, BINDINGS)
    cuts: list[np.ndarray] = []

    def features(stream: str, samples: np.ndarray, first: int) -> np.ndarray | None:
        assert stream == "audio/roof"
        cuts.append(samples)
        return builder.audio_features(stream, samples, first)

    sync = Synchronizer(*settings_from_config(CONFIG), window_transform=features)
    rng = np.random.default_rng(0)
    tone = rng.standard_normal((16000, 1)).astype(np.float32) * 0.1
    lidar = _ingest("lidar/top", "lidar", T0 + 600 * MS, lidar=np.ones((3, 64, 64), np.float32))
    assert sync.add("lidar/top", lidar.stamp_ns, builder.payload(lidar)) == []
    for k in range(31):  # 20 ms chunks from T0 to T0 + 620 ms: they cover the window (100, 600] ms
        chunk = _ingest("audio/roof", "audio", T0 + k * 20 * MS, samples=tone[k * 320 : (k + 1) * 320])
        assert sync.add("audio/roof", chunk.stamp_ns, builder.payload(chunk)) == []
    assert len(cuts) == 1  # cut once, as soon as the audio passed the reference stamp
    camera = _ingest("camera/front", "camera", T0 + 605 * MS, camera=np.full((3, 96, 128), 2, np.float32))
    (fused,) = sync.add("camera/front", camera.stamp_ns, builder.payload(camera))
    assert len(cuts) == 1

    message = builder.build(fused, sync_in_ns=7, completed_by="camera/front")
    assert message.stream == "set/fused" and message.modality == "set" and message.seq == 0
    assert message.stamp_ns == lidar.stamp_ns
    assert set(message.arrays) == {"camera", "lidar", "audio"}  # no radar stream: absent
    np.testing.assert_array_equal(message.arrays["audio"], preprocess_audio(cuts[0]))
    np.testing.assert_array_equal(cuts[0], tone[9601 - 8000 : 9601])  # 8000 frames up to t = frame 9600
    meta = message.meta
    assert meta["modalities"] == ["camera", "lidar", "radar", "audio"] and meta["presence"] == [1, 1, 0, 1]
    assert meta["inputs"] == ["camera", "lidar", "radar", "audio"]
    assert meta["streams"] == ["camera/front", "lidar/top", "", "audio/roof"]  # radar: no stream feeds it
    # Audio: the stamp of the window's last frame, here frame 9600 exactly at the reference stamp.
    stamps = {"lidar/top": lidar.stamp_ns, "camera/front": camera.stamp_ns, "audio/roof": lidar.stamp_ns}
    assert meta["stamps"] == stamps
    assert meta["audio_window"] == [lidar.stamp_ns - 500 * MS, lidar.stamp_ns]
    assert meta["completed_by"] == "camera/front"
    assert meta["stages"] == {
        "capture": lidar.stamp_ns,
        "ingest_in": lidar.stamp_ns + 1,  # of the reference message, not the camera's
        "ingest_out": lidar.stamp_ns + 2,
        "sync_in": 7,
    }


def test_absent_modalities_have_no_arrays_and_a_zero_bit() -> None:
    builder = SetBuilder(CONFIG, BINDINGS)
    sync = Synchronizer(*settings_from_config(CONFIG), window_transform=builder.audio_features)
    lidar = _ingest("lidar/top", "lidar", T0, lidar=np.ones((3, 64, 64), np.float32))
    sync.add("lidar/top", T0, builder.payload(lidar))
    (fused,) = sync.tick(T0 + 61 * MS)  # deadline: no camera, no audio
    message = builder.build(fused, T0 + 61 * MS, "deadline")
    assert set(message.arrays) == {"lidar"} and message.meta["presence"] == [0, 1, 0, 0]
    assert message.meta["audio_window"] is None and message.meta["stamps"] == {"lidar/top": T0}


def test_inputs_that_do_not_fit_the_contract_are_refused_by_reason() -> None:
    builder = SetBuilder(CONFIG, BINDINGS)
    cases = {
        "unknown_stream": _ingest("radar/front", "radar", T0, radar=np.zeros((64, 5), np.float32)),
        "wrong_modality": _ingest("camera/front", "lidar", T0, camera=np.zeros((3, 96, 128), np.float32)),
        "missing_array": _ingest("lidar/top", "lidar", T0, points=np.zeros((3, 64, 64), np.float32)),
        "bad_array": _ingest("lidar/top", "lidar", T0, lidar=np.zeros((3, 64, 64), np.float64)),
    }
    audio = _ingest("audio/roof", "audio", T0, samples=np.zeros((320, 1), np.float32))
    audio.meta = {"sample_rate": 8000}
    cases["bad_meta"] = audio
    cases["bad_array "] = _ingest("audio/roof", "audio", T0, samples=np.zeros(320, np.float32))
    for reason, sample in cases.items():
        with pytest.raises(InputError) as err:
            builder.payload(sample)
        assert err.value.reason == reason.strip()


def test_two_cameras_fill_their_own_inputs_and_bits_in_the_contracts_presence_order() -> None:
    camera = CameraParams()
    lidar = default_contract().input("lidar")
    inputs = tuple(
        InputSpec(n, "camera", camera.shape, camera.to_dict()) for n in ("camera_front", "camera_rear")
    )
    contract = ModelContract(
        (*inputs, lidar), default_contract().outputs, presence_order=("camera_rear", "lidar", "camera_front")
    )
    config = _config(
        stream_table("camera/front", "camera")
        + stream_table("camera/rear", "camera")
        + stream_table("lidar/top", "lidar", "required = true")
    )
    builder = SetBuilder(config, bind(config, contract))
    sync = Synchronizer(*settings_from_config(config))
    rear = _ingest("camera/rear", "camera", T0, camera_rear=np.full(camera.shape, 3, np.float32))
    lidar_sample = _ingest("lidar/top", "lidar", T0, lidar=np.ones((3, 64, 64), np.float32))
    assert sync.add("camera/rear", T0, builder.payload(rear)) == []
    assert sync.add("lidar/top", T0, builder.payload(lidar_sample)) == []
    (fused,) = sync.tick(T0 + 61 * MS)  # the front camera stays silent
    message = builder.build(fused, T0 + 61 * MS, "deadline")
    assert set(message.arrays) == {"camera_rear", "lidar"}
    np.testing.assert_array_equal(message.arrays["camera_rear"], rear.arrays["camera_rear"])
    assert message.meta["presence"] == [1, 1, 0]
    assert message.meta["inputs"] == ["camera_rear", "lidar", "camera_front"]
    assert message.meta["streams"] == ["camera/rear", "lidar/top", "camera/front"]
    assert message.meta["modalities"] == ["camera", "lidar", "camera"]
    # Each stream must deliver its own input's array: the rear camera's under the front's name is refused.
    with pytest.raises(InputError) as err:
        builder.payload(_ingest("camera/rear", "camera", T0, camera_front=rear.arrays["camera_rear"]))
    assert err.value.reason == "missing_array"


def test_the_audio_windows_stamp_is_in_the_sets_and_the_results_stamps() -> None:
    """meta.stamps names the audio stream with the stamp of the window's last frame (its capture time),
    in the set message and in the result the inference stage makes of it."""
    from pipeline_harness import DEMO_TEXT

    from fusion_pipeline.inference import ModelRuntime, result_sample

    builder = SetBuilder(CONFIG, BINDINGS)
    sync = Synchronizer(*settings_from_config(CONFIG), window_transform=builder.audio_features)
    lidar = _ingest("lidar/top", "lidar", T0 + 600 * MS, lidar=np.ones((3, 64, 64), np.float32))
    sync.add("lidar/top", lidar.stamp_ns, builder.payload(lidar))
    tone = np.random.default_rng(1).standard_normal((16000, 1)).astype(np.float32) * 0.1
    skew = 10_000  # 10 us: the audio clock is not on the lidar's grid
    for k in range(31):
        chunk = _ingest("audio/roof", "audio", T0 + k * 20 * MS + skew, samples=tone[k * 320 : (k + 1) * 320])
        sync.add("audio/roof", chunk.stamp_ns, builder.payload(chunk))
    (fused,) = sync.flush()  # no camera came: the end of the streams decides it
    message = builder.build(fused, sync_in_ns=7, completed_by="end")
    # Frame i is at T0 + skew + i * 62.5 us; the last at or before 600 ms is frame 9599.
    last_frame = T0 + skew + 9599 * 62_500
    assert message.meta["stamps"] == {"lidar/top": lidar.stamp_ns, "audio/roof": last_frame}
    assert message.meta["presence"] == [0, 1, 0, 1]
    cpu_demo = DEMO_TEXT.replace('providers = ["auto"]', 'providers = ["cpu"]', 1)
    runtime = ModelRuntime(parse_config(cpu_demo), warm_up=0)
    outputs = runtime.infer(message.arrays, message.meta["presence"])
    result = result_sample(message, outputs, runtime.contract, runtime.provider, seq=0)
    assert result.meta["stamps"] == {"lidar/top": lidar.stamp_ns, "audio/roof": last_frame}
