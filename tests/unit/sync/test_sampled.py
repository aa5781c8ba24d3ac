"""Generic streams in the synchronizer (issue 16, item 3): a set takes the sample nearest its stamp or a
window of the last samples (stacked, with a mask), decided once a later sample came or at the deadline;
no sample yet, gaps and a backward time jump; and the sync stage's sets for a bound and an unbound
generic stream, with every sample counted and a lost one seen in the ingest seq."""

from __future__ import annotations

import numpy as np
import pytest
from config_text import stream_table

from fusion_pipeline.binding import bind
from fusion_pipeline.config import parse_config
from fusion_pipeline.contract import InputSpec, ModelContract, OutputSpec, default_contract
from fusion_pipeline.errors import ContractError
from fusion_pipeline.preprocess import GenericParams, PreprocessError
from fusion_pipeline.sync import SyncStage
from fusion_pipeline.sync.errors import SyncError
from fusion_pipeline.sync.sampled import SampleBuffer
from fusion_pipeline.sync.settings import SampledSync, StreamSync, SyncSettings
from fusion_pipeline.sync.synchronizer import FusedSet, Synchronizer
from fusion_pipeline.transport import Sample

MS = 1_000_000
T0 = 10**15
NEAREST = SampledSync("nearest", tolerance_ns=2 * MS)
WINDOW = SampledSync("window", samples=4, span_ns=4 * MS)


def _synchronizer(sampled: SampledSync, max_wait_ms: int = 60) -> Synchronizer[str]:
    settings = SyncSettings(reference="lidar", max_wait_ns=max_wait_ms * MS, time_jump_ns=1000 * MS)
    streams = [StreamSync("lidar"), StreamSync("imu", kind="sampled", sampled=sampled)]
    return Synchronizer(settings, streams)


def _imu(stamp_ns: int) -> np.ndarray:
    return np.full(6, stamp_ns // MS % 1000, np.float32)  # its ms, to tell samples apart


def _feed(sync: Synchronizer[str], stamps_ms: list[int], t0: int = T0) -> list[FusedSet[str]]:
    out = []
    for ms in stamps_ms:
        out += sync.add("imu", t0 + ms * MS, _imu(t0 + ms * MS))
    return out


def test_nearest_takes_the_sample_nearest_the_stamp_once_a_later_one_came() -> None:
    sync = _synchronizer(NEAREST)
    _feed(sync, [0, 1, 2, 3, 4])
    assert sync.add("lidar", T0 + 6 * MS, "scan") == []  # 4 ms is 2 ms away, but 7 ms might be nearer
    (fused,) = _feed(sync, [7])  # 7 is 1 ms away: the nearest
    assert fused.presence == {"lidar": True, "imu": True}
    assert fused.taken["imu"].last_ns == T0 + 7 * MS and fused.taken["imu"].mask is None
    np.testing.assert_array_equal(fused.taken["imu"].values, _imu(T0 + 7 * MS))


def test_nearest_ties_go_to_the_earlier_sample_and_none_within_tolerance_is_absent() -> None:
    sync = _synchronizer(NEAREST)
    _feed(sync, [0, 2])
    (tie,) = sync.add("lidar", T0 + 1 * MS, "scan")  # decided at once: 2 ms is later
    assert tie.taken["imu"].last_ns == T0  # 0 and 2 ms are both 1 ms away
    sync.add("lidar", T0 + 10 * MS, "scan")  # 4 and 13 ms are 6 and 3 ms away: over 2 ms
    (far,) = _feed(sync, [13])
    assert far.presence["imu"] is False and "imu" not in far.taken


def test_no_sample_yet_the_set_waits_for_the_deadline_then_lacks_the_stream() -> None:
    sync = _synchronizer(NEAREST)
    assert sync.add("lidar", T0, "scan") == []
    assert sync.tick(T0 + 60 * MS) == []
    (fused,) = sync.tick(T0 + 61 * MS)
    assert fused.presence == {"lidar": True, "imu": False}


def test_window_stacks_the_last_samples_oldest_first_padded_at_the_front_with_a_mask() -> None:
    sync = _synchronizer(WINDOW)
    _feed(sync, [0, 1, 2, 3, 4, 5])
    sync.add("lidar", T0 + 5 * MS, "scan")
    (full,) = _feed(sync, [6])
    taken = full.taken["imu"]
    assert taken.values.shape == (4, 6) and taken.last_ns == T0 + 5 * MS
    assert taken.values[:, 0].tolist() == [2, 3, 4, 5]  # (1 ms, 5 ms]: the span excludes 1 ms
    assert taken.mask.tolist() == [1, 1, 1, 1]
    # A gap (no 7 ms): (5, 9] holds 6 and 8 ms; the rows before them are zeros and masked out.
    _feed(sync, [8])
    sync.add("lidar", T0 + 9 * MS, "scan")
    (gap,) = _feed(sync, [10])
    assert gap.taken["imu"].values[:, 0].tolist() == [0, 0, 6, 8]
    assert gap.taken["imu"].mask.tolist() == [0, 0, 1, 1]
    # Nothing in the span: absent.
    sync.add("lidar", T0 + 20 * MS, "scan")
    (empty,) = _feed(sync, [30])
    assert empty.presence["imu"] is False


def test_window_takes_at_most_its_rows_however_many_the_span_holds() -> None:
    sync = _synchronizer(SampledSync("window", samples=3, span_ns=100 * MS))
    _feed(sync, list(range(10)))
    sync.add("lidar", T0 + 9 * MS, "scan")
    (fused,) = _feed(sync, [10])
    assert fused.taken["imu"].values[:, 0].tolist() == [7, 8, 9]


def test_a_sample_serves_several_sets_and_none_is_counted_as_dropped() -> None:
    sync = _synchronizer(WINDOW)
    sets = []
    for ms in range(0, 200):
        if ms % 10 == 5:
            sets += sync.add("lidar", T0 + ms * MS, "scan")
        sets += _feed(sync, [ms])
    assert len(sets) == 20 and all(s.presence["imu"] for s in sets)
    assert sync.counters.drops.total() == 0
    assert sync.depths()["imu"] <= sync._buffers["imu"].capacity  # pruned as the deadline passes


def test_a_backward_time_jump_resets_the_buffer_and_counts_it() -> None:
    sync = _synchronizer(NEAREST)
    _feed(sync, [0, 1, 2])
    assert sync.add("imu", T0 - 1 * MS, _imu(T0)) == []  # 3 ms back: out of order, dropped
    assert sync.counters.drops.by_stream["imu"]["out_of_order"] == 1
    later = T0 - 5000 * MS  # 5 s back: a log that loops
    _feed(sync, [0], t0=later)
    assert sync.counters.time_jumps == 1 and sync.counters.drops.by_stream["imu"]["reset"] == 3
    sync.add("lidar", later + 1 * MS, "scan")
    (fused,) = _feed(sync, [2], t0=later)
    assert fused.taken["imu"].last_ns == later  # only the samples after the jump


def test_a_sample_of_another_shape_or_not_an_array_is_refused() -> None:
    buffer = SampleBuffer("imu", NEAREST, capacity=4)
    buffer.add(0, np.zeros(6, np.float32))
    with pytest.raises(SyncError, match="a float32 \\(5,\\) sample after float32 \\(6,\\) ones"):
        buffer.check(np.zeros(5, np.float32))
    with pytest.raises(SyncError, match="must be a numpy array"):
        buffer.check([0.0] * 6)
    assert [buffer.add(i, np.zeros(6, np.float32)) for i in range(1, 6)] == [0, 0, 0, 1, 1]


# -- the sync stage: sets of a bound and an unbound generic stream ------------------------------------------

IMU_WINDOW = 'generic = { dtype = "<f4", shape = [6], mode = "window", window_samples = 4 }'
CONFIG_TEXT = (
    stream_table("lidar/top", "lidar")
    + stream_table("imu", "generic", IMU_WINDOW).replace("rate_hz = 10", "rate_hz = 1000")
    + '[sync]\nreference = "lidar/top"\n'
)
LIDAR = default_contract().input("lidar")


def _contract(imu: InputSpec) -> ModelContract:
    return ModelContract(
        inputs=(LIDAR, imu), outputs=(OutputSpec("y", (1,), "regression"),), presence_order=("lidar", "imu")
    )


def _stage_samples(stage: SyncStage, seqs: list[int], lidar_at_ms: int) -> list[Sample]:
    """IMU samples at T0 + seq ms (ingest seq = seq), the lidar scan right after the one at lidar_at_ms."""
    out = []
    for seq in seqs:
        stamp = T0 + seq * MS
        out += stage.add(Sample("imu", "generic", seq, stamp, {"values": _imu(stamp)}, "", {}), stamp)
        if seq == lidar_at_ms:
            lidar = np.zeros((3, 64, 64), np.float32)
            out += stage.add(Sample("lidar/top", "lidar", 0, stamp, {"lidar": lidar}, "", {}), stamp)
    return out


def test_a_bound_window_input_gets_float32_rows_and_its_mask_tensor() -> None:
    params = GenericParams(sample_shape=(6,), mode="window", samples=4)
    contract = _contract(InputSpec("imu", "generic", params.shape, params.to_dict(), mask="imu_mask"))
    config = parse_config(CONFIG_TEXT)
    stage = SyncStage(config, bind(config, contract))
    (message,) = _stage_samples(stage, [0, 1, 2, 3, 4], lidar_at_ms=3)
    assert message.meta["presence"] == [1, 1] and message.meta["unbound"] == {}
    assert message.arrays["imu"].dtype == np.float32 and message.arrays["imu"].shape == (4, 6)
    assert message.arrays["imu"][:, 0].tolist() == [0, 1, 2, 3]
    assert message.arrays["imu_mask"].tolist() == [1, 1, 1, 1]
    assert message.meta["stamps"]["imu"] == T0 + 3 * MS


def test_a_bound_input_must_take_the_configs_shape_and_mode() -> None:
    params = GenericParams(sample_shape=(3,), mode="nearest")
    contract = _contract(InputSpec("imu", "generic", params.shape, params.to_dict()))
    with pytest.raises(ContractError) as info:
        bind(parse_config(CONFIG_TEXT), contract)
    assert "streams[1].generic.shape: [6], model input 'imu' takes [3]" in str(info.value)
    assert "streams[1].generic.mode: 'window', model input 'imu' takes 'nearest'" in str(info.value)


def test_an_unbound_stream_rides_in_the_sets_under_its_name_and_every_sample_is_counted() -> None:
    config = parse_config(
        CONFIG_TEXT + '[model]\nunbound_streams = ["imu"]\nunbound_inputs = ["radar", "camera", "audio"]\n'
    )
    bindings = bind(config, default_contract())
    assert set(bindings.by_stream) == {"lidar/top"} and set(bindings.unbound) == {"imu"}
    stage = SyncStage(config, bindings)
    (message,) = _stage_samples(stage, [0, 1, 2, 3, 5, 6], lidar_at_ms=3)  # seq 4 lost on the way
    assert message.meta["unbound"] == {"imu": 1} and message.meta["presence"] == [0, 1, 0, 0]
    assert message.arrays["imu"].shape == (4, 6) and message.arrays["imu_mask"].tolist() == [1, 1, 1, 1]
    counters = stage.counters()
    assert counters["received.imu"] == 6 and counters["received.lidar/top"] == 1
    assert counters["dropped.imu.lost"] == 1
    assert counters["unbound_held.imu"] == 1  # the one set held it: no result says so, the summaries do


def test_a_generic_stream_with_no_input_and_not_listed_is_refused_by_name() -> None:
    config = parse_config(CONFIG_TEXT + '[model]\nunbound_inputs = ["radar", "camera", "audio"]\n')
    with pytest.raises(ContractError, match=r"streams\[1\] \('imu'\): no model input is named 'imu'"):
        bind(config, default_contract())


def test_a_generic_input_in_window_mode_has_a_mask_and_its_params_are_checked() -> None:
    params = GenericParams(sample_shape=(6,), mode="window", samples=4)
    with pytest.raises(ContractError, match="inputs.imu.mask: a radar input and a generic input in window"):
        _contract(InputSpec("imu", "generic", params.shape, params.to_dict()))
    with pytest.raises(PreprocessError, match="preprocess.samples must be 1 for 'nearest'"):
        GenericParams(sample_shape=(6,), mode="nearest", samples=4)
    with pytest.raises(PreprocessError, match="preprocess.mode must be one of"):
        GenericParams.from_dict({"mode": "latest"})
    assert GenericParams.from_dict(params.to_dict()) == params and params.shape == (4, 6)
