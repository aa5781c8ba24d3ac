"""Generic streams at ingest (issue 16, item 3): the [streams.generic] table, the sample's schema checked
per message against it, NaN and inf refused, every message taken (never drained to the newest)."""

from __future__ import annotations

import numpy as np
import pytest

from fusion_pipeline.binding import bind
from fusion_pipeline.config import parse_config
from fusion_pipeline.contract import default_contract
from fusion_pipeline.errors import ConfigError, ContractError
from fusion_pipeline.ingest import SCHEMA_REASONS, Ingest, limit_problems
from fusion_pipeline.node import stream_hwm
from fusion_pipeline.transport import Sample, decode, encode

MS = 1_000_000
IMU = 'generic = { dtype = "<f4", shape = [6], mode = "window", window_samples = 20 }'


def _config(generic: str = IMU, extra: str = "", rate_hz: int = 1000) -> str:
    return f"""
[[streams]]
name = "lidar/top"
modality = "lidar"
endpoint = "ipc:///x/l.sock"
rate_hz = 10
[[streams]]
name = "imu"
modality = "generic"
endpoint = "ipc:///x/imu.sock"
rate_hz = {rate_hz}
{generic}
[sync]
reference = "lidar/top"
{extra}
"""


def _imu(seq: int, values: np.ndarray, stamp_ns: int | None = None, stream: str = "imu") -> Sample:
    stamp = (1000 + seq) * MS if stamp_ns is None else stamp_ns
    # Through the real codec, so arrays are the read-only frame views ingest sees in the node.
    return decode(encode(Sample(stream, "generic", seq, stamp, {"values": values}, "", {})))


def test_a_generic_stream_declares_its_sample_and_a_consistent_reference_mode() -> None:
    config = parse_config(_config())
    generic = config.stream("imu").generic
    assert generic is not None and (generic.dtype, generic.shape, generic.mode) == ("<f4", [6], "window")
    cases = {
        "": "streams[1].generic: required for a generic stream",
        'generic = { dtype = "<f4", shape = [6], mode = "window" }': "generic.window_samples: required",
        'generic = { dtype = "<f4", shape = [6], window_ms = 5 }': "generic.window_ms: not used",
        'generic = { dtype = "float", shape = [6] }': "streams[1].generic.dtype: Value error, unknown dtype",
        'generic = { dtype = "<f4", shape = [0] }': "every size must be at least 1",
        'generic = { dtype = "<f4", shape = [6], rate = 3 }': "streams[1].generic.rate: Extra inputs",
    }
    for generic_line, expected in cases.items():
        with pytest.raises(ConfigError, match=expected.replace("[", r"\[").replace(".", r"\.")):
            parse_config(_config(generic_line))
    with pytest.raises(ConfigError, match=r"streams\[0\]\.generic: only generic streams"):
        parse_config(_config().replace("rate_hz = 10\n", f"rate_hz = 10\n{IMU}\n", 1))
    with pytest.raises(ConfigError, match="a generic stream is sampled into other streams' sets"):
        parse_config(_config().replace('reference = "lidar/top"', 'reference = "imu"'))


def test_a_generic_stream_no_model_input_takes_is_told_of_model_unbound_streams() -> None:
    """The way to run it without a model input (record it only) went unsaid: only "set streams[1].input"."""
    with pytest.raises(ContractError) as refused:
        bind(parse_config(_config()), default_contract())
    assert (
        "remove the stream, or run a model that takes it, or list it in model.unbound_streams to record "
        "it only" in str(refused.value)
    )


def test_model_unbound_streams_names_generic_streams_only() -> None:
    config = parse_config(_config(extra='[model]\nunbound_streams = ["imu"]'))
    assert config.model.unbound_streams == ["imu"]
    with pytest.raises(ConfigError, match=r"model\.unbound_streams\[0\]: 'lidar/top' is a lidar stream"):
        parse_config(_config(extra='[model]\nunbound_streams = ["lidar/top"]'))
    with pytest.raises(ConfigError, match=r"model\.unbound_streams\[0\]: 'gps' is not a stream"):
        parse_config(_config(extra='[model]\nunbound_streams = ["gps"]'))


@pytest.mark.parametrize(
    ("limits", "problem"),
    [
        (
            'dtypes = ["<f8"]',
            "streams[imu].limits.dtypes: ['<f8'] holds none of its messages' dtypes ['<f4']",
        ),
        ("max_array_mb = 0.00001", "streams[imu].limits.max_array_mb: 1e-05, one sample is 24 bytes"),
    ],
)
def test_limits_that_refuse_every_sample_are_found_before_the_start(limits: str, problem: str) -> None:
    """Before, such a stream loaded and then every message was dropped (always missing from the sets)."""
    config = parse_config(_config(generic=f"{IMU}\nlimits = {{ {limits} }}"))
    assert limit_problems(config.stream("imu")) == [problem]
    assert limit_problems(config.stream("lidar/top")) == []
    lidar_limits = 'limits = { dtypes = ["|u1"], max_ndim = 1 }'
    lidar = parse_config(_config().replace("rate_hz = 10\n", f"rate_hz = 10\n{lidar_limits}\n"))
    assert limit_problems(lidar.stream("lidar/top")) == [
        "streams[lidar/top].limits.dtypes: ['|u1'] holds none of its messages' dtypes ['<f4']",
        "streams[lidar/top].limits.max_ndim: 1, its arrays have 2 dimensions",
    ]


def test_limits_themselves_are_consistent() -> None:
    with pytest.raises(ConfigError, match="dtypes: List should have at least 1 item"):
        parse_config(_config(generic=f"{IMU}\nlimits = {{ dtypes = [] }}"))
    with pytest.raises(ConfigError, match=r"max_array_mb \(200.0\) is over max_total_mb \(128.0\)"):
        parse_config(_config(generic=f"{IMU}\nlimits = {{ max_array_mb = 200.0 }}"))


def test_a_sample_of_the_declared_dtype_and_shape_passes_as_it_is() -> None:
    ingest = Ingest(parse_config(_config()).stream("imu"))
    values = np.arange(6, dtype=np.float32)
    out = ingest.process(_imu(0, values), arrival_ns=1000 * MS)
    assert out is not None and out.modality == "generic" and list(out.arrays) == ["values"]
    np.testing.assert_array_equal(out.arrays["values"], values)
    assert out.arrays["values"].flags.writeable  # owned: the synchronizer keeps samples a while
    assert ingest.counters()["produced"] == 1


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        (np.zeros(6, np.float64), "bad_dtype"),
        (np.zeros(5, np.float32), "bad_shape"),
        (np.zeros((1, 6), np.float32), "bad_shape"),
        (np.zeros((6, 1), np.float32), "bad_shape"),
        (np.array([0, 0, np.nan, 0, 0, 0], np.float32), "non_finite"),
        (np.array([0, 0, 0, 0, np.inf, 0], np.float32), "non_finite"),
    ],
)
def test_a_sample_off_the_schema_is_refused_and_counted(values: np.ndarray, reason: str) -> None:
    ingest = Ingest(parse_config(_config()).stream("imu"))
    assert ingest.process(_imu(0, values), arrival_ns=1000 * MS) is None
    assert reason in SCHEMA_REASONS
    assert ingest.counters()[f"schema_{reason}"] == 1
    assert ingest.counters()["produced"] == 0
    # The next good message is taken: a refused one used up its seq, so no gap is counted.
    assert ingest.process(_imu(1, np.zeros(6, np.float32)), arrival_ns=1001 * MS) is not None
    assert ingest.counters()["seq_lost"] == 0


def test_a_missing_array_and_another_stream_are_refused() -> None:
    ingest = Ingest(parse_config(_config()).stream("imu"))
    sample = decode(encode(Sample("imu", "generic", 0, 1000 * MS, {"data": np.zeros(6, np.float32)}, "", {})))
    assert ingest.process(sample, 1000 * MS) is None
    assert ingest.process(_imu(1, np.zeros(6, np.float32), stream="imu2"), 1000 * MS) is None
    assert ingest.counters()["schema_missing_array"] == 1
    assert ingest.counters()["schema_wrong_stream"] == 1


def test_a_two_dimensional_sample_and_an_integer_dtype() -> None:
    generic = 'generic = { dtype = "|u1", shape = [4, 8] }'  # e.g. 4 CAN frames of 8 bytes
    ingest = Ingest(parse_config(_config(generic, rate_hz=500)).stream("imu"))
    frames = np.arange(32, dtype=np.uint8).reshape(4, 8)
    out = ingest.process(_imu(0, frames), 1000 * MS)
    assert out is not None and out.arrays["values"].dtype == np.uint8
    assert ingest.process(_imu(1, frames.reshape(8, 4)), 1001 * MS) is None
    assert ingest.counters()["schema_bad_shape"] == 1


def test_generic_streams_are_taken_in_full_with_a_second_of_queue() -> None:
    config = parse_config(_config())
    assert not Ingest(config.stream("imu")).drain_newest
    assert stream_hwm(config.stream("imu")) == 1000  # 1 s at 1 kHz
    assert stream_hwm(config.stream("lidar/top")) is None  # discrete: the role's small default
    assert stream_hwm(parse_config(_config(rate_hz=2)).stream("imu")) == 8  # at least the default
