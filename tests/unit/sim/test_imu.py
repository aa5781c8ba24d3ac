"""The simulated generic sensor, an IMU (issue 16): its samples, its FIFO when the driver is late, and
the one schema it renders."""

from __future__ import annotations

import numpy as np
import pytest

from fusion_pipeline.config import StreamConfig, parse_config
from fusion_pipeline.sim import SensorSchedule, SimError, SimSettings, World, render

S = 1_000_000_000
IMU = """
[[streams]]
name = "imu"
modality = "generic"
endpoint = "ipc:///x/imu.sock"
rate_hz = 1000
generic = {{ dtype = "{dtype}", shape = [6] }}
[[streams]]
name = "lidar/top"
modality = "lidar"
endpoint = "ipc:///x/l.sock"
rate_hz = 10
[sync]
reference = "lidar/top"
"""


def _stream(dtype: str = "<f4") -> StreamConfig:
    return parse_config(IMU.format(dtype=dtype)).stream("imu")


def test_imu_samples_are_gravity_bounce_and_noise_reproducible_per_stamp() -> None:
    world = World(3)
    samples = np.stack([world.imu(10 * S + k * S // 1000) for k in range(2000)])
    assert samples.dtype == np.float32 and samples.shape == (2000, 6)
    assert abs(samples[:, 2].mean() - 9.81) < 0.05  # gravity on z
    assert np.abs(samples[:, [0, 1, 3, 5]].mean(axis=0)).max() < 0.01  # straight at constant speed
    assert samples[:, :3].std(axis=0).min() > 0.005  # noise: not constant
    np.testing.assert_array_equal(world.imu(10 * S), World(3).imu(10 * S))  # a pure function of the stamp
    stream = _stream()
    schedule = SensorSchedule(stream, SimSettings.from_stream(stream), 10 * S)
    arrays, meta = render(world, stream, schedule.next(), schedule.chunk)
    assert list(arrays) == ["values"] and arrays["values"].shape == (6,) and meta == {}


def test_a_late_imu_driver_sends_from_its_fifo_and_skips_only_beyond_a_second() -> None:
    stream = _stream()
    schedule = SensorSchedule(stream, SimSettings.from_stream(stream), 10 * S)
    first = schedule.next()
    assert schedule.skip_to(first.stamp_ns + S // 2) == 0  # half a second behind: all still sent
    assert schedule.next().stamp_ns == first.stamp_ns + S // 1000
    skipped = schedule.skip_to(first.stamp_ns + 3 * S)  # three seconds behind: the oldest two go
    assert 1990 <= skipped <= 2000


def test_the_simulated_generic_sensor_renders_an_imu_only() -> None:
    with pytest.raises(
        SimError, match=r"the simulated generic sensor is an IMU, dtype = '<f4'.*\"external\""
    ):
        SimSettings.from_stream(_stream("|u1"))
