"""Simulated sensor drivers: settings, capture schedule, rendering. A real driver process on the wire:
tests/process/test_sensor_sim.py."""

from __future__ import annotations

import numpy as np
import pytest
from pipeline_harness import DEMO_TEXT, add_to_stream

from fusion_pipeline.config import load_config, parse_config
from fusion_pipeline.sim import (
    AUDIO_SAMPLE_RATE,
    Actor,
    Capture,
    Mount,
    RenderLead,
    Scene,
    SensorSchedule,
    SimError,
    SimSettings,
    World,
    render,
)

S = 1_000_000_000
START = 1_700_000_000_123_456_789  # an arbitrary wall-clock start, not on any grid


def _stream(name: str, sim: str = "", rate: float | None = None):
    text = add_to_stream(DEMO_TEXT, name, sim) if sim else DEMO_TEXT
    config = parse_config(text)
    stream = config.stream(name)
    return stream.model_copy(update={"rate_hz": rate}) if rate else stream


def test_settings_default_and_parse() -> None:
    assert SimSettings.from_stream(_stream("radar/front")) == SimSettings()
    settings = SimSettings.from_stream(
        _stream(
            "radar/front",
            "sim = { seed = 3, latency_ms = 15, jitter_ms = 2.5, drop_prob = 0.1, "
            "outage = { start_s = 2, duration_s = 1.5 } }",
        )
    )
    assert settings == SimSettings(
        seed=3, latency_ms=15, jitter_ms=2.5, drop_prob=0.1, outage_start_s=2.0, outage_duration_s=1.5
    )
    assert SimSettings().describe() == "perfect sensor"
    assert SimSettings(seed=3, drop_prob=0.1).describe() == "seed=3, drop_prob=0.1"
    # Of a mount only what was set: a radar's printed a camera's default field of view (fov_deg=46.2).
    assert SimSettings(mount=Mount(yaw_deg=45, y_m=-0.8)).describe() == "yaw_deg=45, y_m=-0.8"


@pytest.mark.parametrize(
    ("sim", "message"),
    [
        ("sim = { jiter_ms = 1 }", r"streams\[radar/front\].sim: unknown keys \['jiter_ms'\]"),
        ("sim = { jitter_ms = -1 }", r"sim.jitter_ms: must be >= 0"),
        ("sim = { drop_prob = 1.5 }", r"sim.drop_prob: must be in \[0, 1\]"),
        ("sim = { seed = 1.5 }", r"sim.seed: expected a non-negative integer"),
        ('sim = { latency_ms = "5" }', r"sim.latency_ms: expected a finite number"),
        ("sim = { outage = { start_s = 1 } }", r"sim.outage: expected"),
        # The driver crash-looped on these (OverflowError), or took a boolean for a time.
        ("sim = { outage = { start_s = inf, duration_s = 1 } }", r"sim.outage: start_s must be finite"),
        ("sim = { outage = { start_s = 1, duration_s = nan } }", r"sim.outage: start_s and duration_s must"),
        ("sim = { outage = { start_s = true, duration_s = 2 } }", r"sim.outage: start_s and duration_s must"),
        ("sim = { phase_ms = 50 }", r"sim.phase_ms: must be in \[0, one period\)"),  # 20 Hz: 50 ms
        (
            "sim = { fov_deg = 70 }",
            r"streams\[radar/front\]\.sim\.fov_deg: only a camera has a field of view",
        ),
        ('sim = { yaw_deg = "left" }', r"sim.yaw_deg: expected a finite number"),
        ("sim = { x_m = inf }", r"streams\[radar/front\]\.sim\.x_m: expected a finite number"),
    ],
)
def test_bad_settings_name_the_key(sim: str, message: str) -> None:
    with pytest.raises(SimError, match=message):
        SimSettings.from_stream(_stream("radar/front", sim))


def test_mount_keys_give_the_stream_its_mount() -> None:
    camera = _stream("camera/front", "sim = { yaw_deg = 55, fov_deg = 70, x_m = 1.5, y_m = -0.5 }")
    assert SimSettings.from_stream(camera).mount == Mount(yaw_deg=55, fov_deg=70, x_m=1.5, y_m=-0.5)
    assert SimSettings.from_stream(_stream("radar/front", "sim = { yaw_deg = 45 }")).mount == Mount(
        yaw_deg=45
    )
    assert SimSettings.from_stream(_stream("lidar/top")).mount == Mount()
    with pytest.raises(
        SimError, match=r"streams\[camera/front\]\.sim\.fov_deg: a pinhole camera sees between"
    ):
        SimSettings.from_stream(_stream("camera/front", "sim = { fov_deg = 180 }"))


def test_the_simulated_microphone_names_its_sample_rate_key() -> None:
    audio = _stream("audio/roof").model_copy(update={"sample_rate": 44100})
    with pytest.raises(SimError, match=r"streams\[audio/roof\]\.sample_rate: .* renders 16000 Hz, got 44100"):
        SimSettings.from_stream(audio)


def test_audio_chunks_must_be_whole_samples() -> None:
    with pytest.raises(SimError, match=r"streams\[audio/roof\]\.rate_hz: .* chunks of whole samples"):
        SimSettings.from_stream(_stream("audio/roof", rate=30.0))  # 533.3 samples per chunk


def test_captures_sit_on_the_epoch_grid_and_send_after_latency() -> None:
    schedule = SensorSchedule(_stream("radar/front"), SimSettings(latency_ms=7), START)
    captures = [schedule.next() for _ in range(5)]
    stamps = [c.stamp_ns for c in captures]
    assert stamps[0] >= START and stamps[0] - START < S // 20
    assert all(s % (S // 20) == 0 for s in stamps)  # 20 Hz grid counted from the epoch
    assert np.diff(stamps).tolist() == [S // 20] * 4
    assert all(c.sent and c.send_ns - c.stamp_ns == 7_000_000 for c in captures)


def test_sensors_share_capture_instants_unless_given_a_phase() -> None:
    def stamps(name: str, settings: SimSettings, n: int) -> list[int]:
        schedule = SensorSchedule(_stream(name), settings, START)
        return [schedule.next().stamp_ns for _ in range(n)]

    lidar = stamps("lidar/top", SimSettings(), 10)
    camera = stamps("camera/front", SimSettings(), 30)
    assert set(lidar) <= set(camera)  # every lidar sweep has a camera frame at the same instant
    assert np.diff(camera).min() >= S // 30 and np.diff(camera).max() <= S // 30 + 1  # exact 30 Hz, no drift
    shifted = stamps("camera/front", SimSettings(phase_ms=10), 30)
    assert {t - 10_000_000 for t in shifted} == set(camera)
    audio = stamps("audio/roof", SimSettings(phase_ms=1.23), 3)
    assert all((t - audio[0]) % 20_000_000 == 0 and t % 62_500 == 0 for t in audio)  # on the sample grid


def test_jitter_stays_within_bounds_around_the_latency() -> None:
    schedule = SensorSchedule(_stream("camera/front"), SimSettings(latency_ms=5, jitter_ms=3), START)
    delays = np.array([(c := schedule.next()).send_ns - c.stamp_ns for _ in range(2000)]) / 1e6
    assert delays.min() >= 2.0 and delays.max() <= 8.0
    assert delays.std() > 1.0  # it does vary (uniform +-3 ms has sd 1.73 ms)


def test_drops_are_random_at_the_configured_rate_and_reproducible() -> None:
    def lost(seed: int) -> list[bool]:
        schedule = SensorSchedule(_stream("camera/front"), SimSettings(seed=seed, drop_prob=0.2), START)
        return [not schedule.next().sent for _ in range(5000)]

    a = lost(1)
    assert 0.18 < np.mean(a) < 0.22
    assert a == lost(1) and a != lost(2)


def test_outage_silences_exactly_its_window() -> None:
    schedule = SensorSchedule(
        _stream("lidar/top"), SimSettings(outage_start_s=1.0, outage_duration_s=0.5), START
    )
    captures = [schedule.next() for _ in range(30)]
    out = [c for c in captures if not c.sent]
    assert {c.why for c in out} == {"outage"}
    assert all(START + S <= c.stamp_ns < START + 3 * S // 2 for c in out)
    assert len(out) == 5  # 0.5 s of a 10 Hz lidar


def test_an_outage_of_infinite_duration_lasts_for_good() -> None:
    settings = SimSettings.from_stream(
        _stream("lidar/top", "sim = { outage = { start_s = 1, duration_s = inf } }")
    )
    schedule = SensorSchedule(_stream("lidar/top"), settings, START)
    captures = [schedule.next() for _ in range(40)]
    assert [c.sent for c in captures] == [True] * 10 + [False] * 30  # from 1 s on, at 10 Hz


def test_late_driver_skips_to_the_current_capture() -> None:
    schedule = SensorSchedule(_stream("camera/front"), SimSettings(), START)
    first = schedule.next()
    skipped = schedule.skip_to(first.stamp_ns + S)  # stalled for a second
    assert skipped == 29
    assert schedule.next().stamp_ns == first.stamp_ns + S  # 30 captures of a 30 Hz camera
    assert schedule.skip_to(0) == 0
    # A sensor whose latency spans several periods is not late when it sends at stamp + latency.
    slow = SensorSchedule(_stream("camera/front"), SimSettings(latency_ms=150), START)
    capture = slow.next()
    assert slow.skip_to(capture.send_ns) == 0
    assert slow.skip_to(capture.send_ns + 2 * S // 30 + 1) == 1  # the one after next is due: skip one


def test_audio_chunks_are_continuous_and_render_the_world_exactly() -> None:
    stream = _stream("audio/roof")
    schedule = SensorSchedule(stream, SimSettings(), START)
    assert schedule.chunk == AUDIO_SAMPLE_RATE // 50
    world = World(0)
    captures = [schedule.next() for _ in range(3)]
    chunks = [render(world, stream, c, schedule.chunk) for c in captures]
    assert [c.stamp_ns - captures[0].stamp_ns for c in captures] == [0, 20_000_000, 40_000_000]
    joined = np.concatenate([arrays["samples"] for arrays, _ in chunks])
    assert joined.shape == (3 * schedule.chunk, 1) and joined.dtype == np.float32
    np.testing.assert_array_equal(joined[:, 0], world.audio(captures[0].stamp_ns, 3 * schedule.chunk))
    assert chunks[0][1] == {"sample_rate": 16000}


def test_render_names_arrays_as_the_protocol_says() -> None:
    config = load_config()
    world = World(0)
    capture = SensorSchedule(config.stream("camera/front"), SimSettings(), START).next()
    shapes = {}
    for stream in config.streams:
        arrays, meta = render(world, stream, capture, 320)
        shapes[stream.modality] = {k: (v.dtype.str, v.shape[1:]) for k, v in arrays.items()}
        if stream.modality == "camera":
            assert meta == {"encoding": "rgb8"}
    assert shapes == {
        "camera": {"image": ("|u1", (640, 3))},
        "lidar": {"points": ("<f4", (4,))},
        "radar": {"detections": ("<f4", (5,))},
        "audio": {"samples": ("<f4", (1,))},
    }


def test_render_shows_the_scene_from_the_stream_mount(monkeypatch: pytest.MonkeyPatch) -> None:
    """A camera turned round sees a car parked behind the ego that the front camera does not; every
    modality renders from its stream's mount."""
    world, empty = World(0), World(0)
    behind = Actor("car", -15.0, 0.0, 0.0, 0.0, length=4.5, width=1.8, height=1.5, color=(160, 25, 25))
    monkeypatch.setattr(world, "episode", lambda k: Scene("clear", 0.0, (behind,)))
    monkeypatch.setattr(empty, "episode", lambda k: Scene("clear", 0.0, ()))
    capture = Capture(START, START, True)

    def image(w: World, sim: str) -> np.ndarray:
        return render(w, _stream("camera/front", sim), capture, 0)[0]["image"]

    assert np.array_equal(image(world, ""), image(empty, ""))
    assert not np.array_equal(
        image(world, "sim = { yaw_deg = 180 }"), image(empty, "sim = { yaw_deg = 180 }")
    )
    mount = Mount(yaw_deg=180, x_m=-1.0)
    sim = "sim = { yaw_deg = 180, x_m = -1.0 }"
    points = render(world, _stream("lidar/top", sim), capture, 0)[0]["points"]
    np.testing.assert_array_equal(points, world.lidar(START, mount))
    detections = render(world, _stream("radar/front", sim), capture, 0)[0]["detections"]
    np.testing.assert_array_equal(detections, world.radar(START, mount))
    samples = render(world, _stream("audio/roof", sim), capture, 320)[0]["samples"]
    np.testing.assert_array_equal(samples[:, 0], world.audio(START, 320, mount=mount))


def test_render_lead_follows_the_render_cost_within_one_period() -> None:
    lead = RenderLead(period_ns=33_000_000, margin_ns=3_000_000, weight=0.5)
    assert lead.lead_ns() == 33_000_000  # unknown cost: render at once
    lead.update(4_000_000)
    assert lead.lead_ns() == 11_000_000  # twice the cost plus the margin
    lead.update(2_000_000)
    assert lead.lead_ns() == 9_000_000  # running mean 3 ms
    lead.update(40_000_000)
    assert lead.lead_ns() == 33_000_000  # never more than a period


def test_rate_factor_speeds_up_the_simulated_sensor_and_is_validated() -> None:
    stream = _stream("radar/front", "sim = { rate_factor = 5 }")
    settings = SimSettings.from_stream(stream)
    assert settings.rate_hz(stream) == 100.0
    assert SensorSchedule(stream, settings, 0).period_ns == 10_000_000
    for bad in (0, -1, "fast", True):
        with pytest.raises(SimError, match=r"rate_factor"):
            SimSettings.from_stream(stream.model_copy(update={"sim": {"rate_factor": bad}}))
    audio = _stream("audio/roof")  # 50 Hz x 0.3 = 15 Hz: not a whole number of samples per chunk
    with pytest.raises(SimError, match="whole samples"):
        SimSettings.from_stream(audio.model_copy(update={"sim": {"rate_factor": 0.3}}))


def test_an_external_streams_sim_table_takes_only_its_mount() -> None:
    """drop_prob on an external stream was checked and then ignored: no simulated driver runs for it."""
    external = 'driver = "external"\nsim = { yaw_deg = 30, drop_prob = 0.5 }'
    with pytest.raises(SimError, match=r"streams\[radar/front\]\.sim: \['drop_prob'\] simulate a driver"):
        SimSettings.from_stream(_stream("radar/front", external))
    mounted = SimSettings.from_stream(_stream("radar/front", 'driver = "external"\nsim = { yaw_deg = 30 }'))
    assert mounted.mount.yaw_deg == 30
