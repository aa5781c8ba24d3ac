"""The viewer (issue 18): its .rrd read back with rerun's own `rerun rrd print`, rerun's analytics off,
the viewer node beside a live demo, the web viewer in headless Chromium, the Foxglove WebSocket."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
import zmq
from commands import sample_log
from headless import Chromium, chromium_path
from pipeline_harness import demo_text, pipeline, wait_for

pytestmark = pytest.mark.process
rr = pytest.importorskip("rerun")
pytest.importorskip("foxglove")

from fusion_pipeline.config import load_config  # noqa: E402
from fusion_pipeline.logs import LogReader  # noqa: E402
from fusion_pipeline.transport.sockets import Publisher  # noqa: E402
from fusion_pipeline.view import (  # noqa: E402
    FoxgloveLive,
    Views,
    ViewSettings,
    disable_analytics,
    free_port,
    rerun_cli,
    show_log,
)

CLI = [sys.executable, "-m", "fusion_pipeline.cli"]


def rrd_rows(path: Path) -> Counter[str]:
    """Rows per entity of an .rrd, as rerun's own `rerun rrd print` lists its chunks."""
    out = subprocess.run(
        [str(rerun_cli()), "rrd", "print", str(path)], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    rows: Counter[str] = Counter()
    for match in re.finditer(r"^Chunk\(\S+\) with (\d+) rows .* - (/\S+) - ", out, flags=re.M):
        rows[match.group(2)] += int(match.group(1))
    return rows


@pytest.fixture
def private_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A HOME of the test's own, so rerun's analytics config is read and written there."""
    home = tmp_path / "home"
    home.mkdir()
    for name, sub in (("HOME", ""), ("XDG_CONFIG_HOME", ".config"), ("XDG_DATA_HOME", ".local/share")):
        monkeypatch.setenv(name, str(home / sub))
    return home


@pytest.fixture(scope="module")
def demo_logs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """2.5 s of the demo's sensors and the results of replaying them."""
    folder = tmp_path_factory.mktemp("logs")
    log, results = folder / "demo.mcap", folder / "demo.results.mcap"
    sample_log(log, 2.5)
    subprocess.run(
        [*CLI, "replay", str(log), "--offline", "--results", str(results)], check=True, capture_output=True
    )
    return log, results


def test_rerun_analytics_switched_off_in_a_fresh_home(tmp_path: Path) -> None:
    """rerun's documented switch, run for a user who never ran rerun: its config file says disabled."""
    home = tmp_path / "fresh"
    env = {
        **os.environ,
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / "cfg"),
        "XDG_DATA_HOME": str(home / "data"),
    }
    written = disable_analytics(env)
    assert written == home / "cfg" / "rerun" / "analytics.json"
    assert json.loads(written.read_text())["analytics_enabled"] is False


def _count(paths: list[Path], stream: str) -> int:
    return sum(1 for m in LogReader(paths) if m.sample.stream == stream)


def test_view_log_saves_every_frame_and_result_with_analytics_off(
    demo_logs: tuple[Path, Path], tmp_path: Path, private_home: Path
) -> None:
    log, results = demo_logs
    out = tmp_path / "view.rrd"
    done = subprocess.run(
        [*CLI, "view", str(log), str(results), "--save", str(out)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    analytics = json.loads((private_home / ".config" / "rerun" / "analytics.json").read_text())
    assert analytics["analytics_enabled"] is False
    rows = rrd_rows(out)
    assert rows["/camera/front/image"] == _count([log], "camera/front") > 0
    assert rows["/result/log"] == _count([results], "result/fused") > 0
    assert rows["/ego/lidar/top"] == _count([log], "lidar/top") + 1  # and its static mount
    assert rows["/audio/roof/spectrogram"] > 0 and rows["/latency"] == rows["/result/log"] + 1  # + its names
    assert out.stat().st_mode & 0o777 == 0o600
    assert not list(tmp_path.glob("*.partial"))
    again = subprocess.run([*CLI, "view", str(log), "--save", str(out)], capture_output=True, text=True)
    assert again.returncode == 2 and "exists already" in again.stderr


def test_view_of_two_result_logs_counts_them_apart_and_says_they_share_the_views(
    demo_logs: tuple[Path, Path], tmp_path: Path, private_home: Path
) -> None:
    """A recording's results and its replay's: one series of twice the results, said nowhere."""
    log, results = demo_logs
    again = tmp_path / "again.mcap"
    shutil.copyfile(results, again)
    report = tmp_path / "view.json"
    argv = [*CLI, "view", str(log), str(results), str(again), "--save", str(tmp_path / "v.rrd")]
    done = subprocess.run([*argv, "--report-json", str(report)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    shown = json.loads(report.read_text())["shown"]
    assert shown["result/fused"] == shown["result/fused@again"] == _count([results], "result/fused") > 0
    assert "result/fused of again -> /result/fused@again" in done.stderr
    assert "shown in the same views as the first log's" in done.stderr


def test_view_of_a_log_cut_short_shows_what_it_holds_and_says_so_once(
    demo_logs: tuple[Path, Path], tmp_path: Path, private_home: Path
) -> None:
    data = demo_logs[0].read_bytes()
    cut = tmp_path / "cut.mcap"
    cut.write_bytes(data[: len(data) // 2])
    out, report = tmp_path / "cut.rrd", tmp_path / "cut.json"
    done = subprocess.run(
        [*CLI, "view", str(cut), "--save", str(out), "--report-json", str(report)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.count(f"log cut short: {cut}: ") == 1, done.stderr
    # The report says it too: a script reading "shown" alone took the log for whole.
    (truncated,) = json.loads(report.read_text())["truncated"]
    assert truncated.startswith(f"{cut}: ")
    assert "showing the messages before it" in done.stderr
    assert 0 < rrd_rows(out)["/camera/front/image"] < _count([demo_logs[0]], "camera/front")


def test_viewer_node_beside_the_live_demo(tmp_path: Path, private_home: Path) -> None:
    saved = tmp_path / "live.rrd"

    def config(run_dir: Path) -> str:
        text = demo_text(run_dir).replace('address = "127.0.0.1:9464"', 'address = "127.0.0.1:0"')
        return text + f'\n[view]\nenabled = true\nsave = "{saved}"\n'

    cli_rrd, cli_report = tmp_path / "cli.rrd", tmp_path / "cli.json"
    with pipeline(config, "--duration", "20", workdir=tmp_path) as run:
        wait_for(lambda: "[status]" in run.output(), 60, "the pipeline to run", run)
        (viewer,) = run.node_pids("viewer")
        (lidar,) = run.node_pids("ingest", "lidar/top")
        # The node enters SCHED_IDLE once its imports are done, which may be after the first status line.
        wait_for(lambda: idle_threads(viewer) > 1, 30, "the viewer's threads under SCHED_IDLE", run)
        assert_ranked_below(viewer, lidar, run.process.pid)
        # beside the node, the command on the same run directory
        view = [*CLI, "view", str(run.run_dir), "--save", str(cli_rrd), "--duration", "5", "--max-hz", "5"]
        done = subprocess.run(
            [*view, "--report-json", str(cli_report)], capture_output=True, text=True, timeout=60
        )
        wait_for(lambda: run.process.poll() is not None, 90, "the 20 s run to end", run)
        output = run.output()
    assert done.returncode == 0, done.stderr
    cli_counters, cli_rows = json.loads(cli_report.read_text()), rrd_rows(cli_rrd)
    assert cli_rows["/camera/front/image"] == cli_counters["camera/front.shown"] > 0
    assert cli_rows["/result/log"] == cli_counters["result/fused.received"] > 0
    # --max-hz 5: a frame at most every 0.15 s of capture time (drain.DrainTally), over 5 s of a 30 Hz camera
    assert cli_counters["camera/front.shown"] <= 5 / 0.15 + 1 < cli_counters["camera/front.received"]
    assert run.process.returncode == 0, output[-3000:]
    # Its last log line: "viewer: received N, skipped N; STREAM: shown N of N, skipped N, lost upstream N"
    line = next(line for line in output.splitlines() if "] viewer: received " in line)
    counters = {
        f"{stream}.{key}": int(value)
        for stream, *values in re.findall(
            r"(\S+): shown (\d+) of (\d+), skipped (\d+), lost upstream (\d+)", line
        )
        for key, value in zip(("shown", "received", "skipped", "lost"), values, strict=True)
    }
    assert f"; wrote {saved}" in line
    rows = rrd_rows(saved)
    assert counters["camera/front.shown"] > 30
    assert rows["/camera/front/image"] == counters["camera/front.shown"]
    assert rows["/result/log"] == counters["result/fused.shown"] == counters["result/fused.received"] > 0
    for stream in ("camera/front", "lidar/top", "radar/front"):
        assert counters[f"{stream}.shown"] + counters[f"{stream}.skipped"] == counters[f"{stream}.received"]
        if counters[f"{stream}.skipped"]:
            assert rows[f"/viewer/{stream}/skipped"] > 0
    assert (private_home / ".config" / "rerun" / "analytics.json").is_file()


def idle_threads(pid: int) -> int:
    """How many threads `pid` has, if all of them are SCHED_IDLE; else 0."""
    policies = [os.sched_getscheduler(int(t)) for t in os.listdir(f"/proc/{pid}/task")]
    return len(policies) if set(policies) == {os.SCHED_IDLE} else 0


def assert_ranked_below(viewer: int, data_path: int, supervisor: int) -> None:
    """Every thread of the viewer is SCHED_IDLE, and the kernel compares it with the data path task by
    task: both in the supervisor's session, so in one autogroup (a session of its own would give the
    viewer an autogroup of its own, which competes at full weight whatever its threads' policy); each
    node in a process group of its own, out of reach of a terminal's Ctrl-C."""
    assert idle_threads(viewer) > 1  # its zmq and rerun threads too, started after the policy was set
    assert os.getsid(viewer) == os.getsid(data_path) == os.getsid(supervisor)
    assert (os.getpgid(viewer), os.getpgid(data_path)) == (viewer, data_path)
    # /proc/PID/autogroup exists with CONFIG_SCHED_AUTOGROUP and reads empty where autogroups are off
    # (the `noautogroup` boot option, as on the CI machine); the shared session is the check that counts.
    autogroup = [Path(f"/proc/{pid}/autogroup") for pid in (viewer, data_path)]
    names = {path.read_text().split()[0] for path in autogroup if path.exists() and path.read_text().strip()}
    assert len(names) <= 1, names


def _panel(image: np.ndarray) -> np.ndarray:
    """The camera view of the layout (scene.blueprint): the top left of the page."""
    height, width, _ = image.shape
    return image[int(0.08 * height) : int(0.5 * height), : int(0.45 * width), :3]


def _pictured(region: np.ndarray) -> float:
    """The share of `region` that is not the viewer's near-white background: an image, not UI."""
    return float((region.max(axis=2) < 235).mean())


@pytest.mark.skipif(
    chromium_path() is None and not os.environ.get("CI"),
    reason="no chromium (apt-get install chromium; .ci/run does)",
)
def test_web_viewer_shows_the_camera_in_headless_chromium(
    demo_logs: tuple[Path, Path], tmp_path: Path, private_home: Path
) -> None:
    from PIL import Image

    settings = ViewSettings(web=True, web_port=free_port(), grpc_port=free_port())
    views = Views(load_config(None), settings, log_time=True)
    try:
        assert views.rerun is not None and views.rerun.web_url.startswith("http://127.0.0.1:")
        with Chromium(views.rerun.web_url) as browser:
            deadline = time.monotonic() + 120
            blank = np.asarray(Image.open(browser.screenshot(tmp_path / "blank.png")))
            while _panel(blank).mean() < 128:  # the dark loading page, until the viewer draws its layout
                assert time.monotonic() < deadline, "the web viewer never drew its layout"
                time.sleep(1)
                blank = np.asarray(Image.open(browser.screenshot(tmp_path / "blank.png")))
            show_log(list(demo_logs), views)
            shot = tmp_path / "camera.png"
            image = blank
            while _pictured(_panel(image)) < 0.5 and time.monotonic() < deadline:
                time.sleep(2)
                image = np.asarray(Image.open(browser.screenshot(shot)))
            if os.environ.get("FP_VIEW_SCREENSHOT"):  # the docs' picture (docs/VIEW.md), every view drawn
                time.sleep(10)
                browser.screenshot(Path(os.environ["FP_VIEW_SCREENSHOT"]))
    finally:
        views.close()
    # The page tries other hosts (rerun's analytics, GitHub's releases, Google's fonts); the browser sent
    # none of those requests: the policy blocked each one.
    outside = {
        request: url
        for request, url in browser.requests.items()
        if urlsplit(url).scheme in ("http", "https") and urlsplit(url).hostname != "127.0.0.1"
    }
    assert any(urlsplit(url).hostname == "127.0.0.1" for url in browser.requests.values())
    assert {request: browser.blocked.get(request) for request in outside} == dict.fromkeys(outside, "csp")
    assert _pictured(_panel(blank)) < 0.2  # the empty viewer: background and a few words
    assert _pictured(_panel(image)) > 0.5  # the camera frame fills most of its view
    changed = np.abs(_panel(image).astype(int) - _panel(blank).astype(int)).max(axis=2) > 24
    assert changed.mean() > 0.3, f"the camera view changed on {changed.mean():.0%} of its pixels"


def test_foxglove_websocket_serves_export_channels_on_loopback(
    demo_logs: tuple[Path, Path], tmp_path: Path
) -> None:
    """The live server's channels are export-foxglove's: the same topics, schemas and messages (read
    through an MCAP sink on the server's context, which sees what a connected client would)."""
    import foxglove
    import psutil
    from mcap.reader import make_reader

    from fusion_pipeline.logs import export_foxglove

    live = FoxgloveLive(0)
    sink = foxglove.open_mcap(tmp_path / "live.mcap", context=live.context)
    try:
        for message in LogReader(list(demo_logs)):
            live.show(message.sample, message.log_time_ns)
        listening = [
            c.laddr for c in psutil.Process().net_connections("tcp") if c.status == psutil.CONN_LISTEN
        ]
    finally:
        sink.close()
        live.close()
    assert ("127.0.0.1", live.port) in [(a.ip, a.port) for a in listening]
    assert live.no_schema == Counter({"audio/roof": _count([demo_logs[0]], "audio/roof")})
    export_foxglove(list(demo_logs), tmp_path / "export.mcap")

    def channels(path: Path) -> dict[str, tuple[str, bytes, int, bytes]]:
        """topic -> (schema name, schema data, messages, first message)"""
        with path.open("rb") as stream:
            out: dict[str, tuple[str, bytes, int, bytes]] = {}
            for schema, channel, message in make_reader(stream).iter_messages():
                name, data, n, first = out.get(channel.topic, (schema.name, schema.data, 0, message.data))
                out[channel.topic] = (name, data, n + 1, first)
            return out

    live_channels, exported = channels(tmp_path / "live.mcap"), channels(tmp_path / "export.mcap")
    assert (
        set(live_channels)
        == set(exported)
        == {"/camera/front", "/lidar/top", "/radar/front", "/result/fused"}
    )
    for topic, (schema, data, n, first) in exported.items():
        live_schema, live_data, live_n, live_first = live_channels[topic]
        assert (live_schema, json.loads(live_data), live_n) == (schema, json.loads(data), n), topic
        assert json.loads(live_first) == json.loads(first), topic


def _wait_for_file(pattern: str, folder: Path, child: subprocess.Popen[str], timeout_s: float = 60) -> Path:
    deadline = time.monotonic() + timeout_s
    while not (found := list(folder.glob(pattern))):
        assert child.poll() is None, child.communicate()
        assert time.monotonic() < deadline, f"no {pattern} in {folder}"
        time.sleep(0.005)
    return found[0]


def _stopped_by_sigterm(
    command: list[str], partial: str, folder: Path, before: Callable[[Path], None] = lambda _: None
) -> tuple[subprocess.Popen[str], str, str]:
    """Run `command` until its `partial` file appears in `folder`, call `before` with it, then SIGTERM
    it; the process (ended), its stdout and stderr."""
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        before(_wait_for_file(partial, folder, child))
        child.send_signal(signal.SIGTERM)
        stdout, stderr = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    return child, stdout, stderr


def test_sigterm_part_way_through_a_log_leaves_no_rrd(
    demo_logs: tuple[Path, Path], tmp_path: Path, private_home: Path
) -> None:
    """SIGTERM is a Ctrl-C: the log shown part way leaves nothing (the partial stayed behind)."""
    out = tmp_path / "part.rrd"
    child, stdout, stderr = _stopped_by_sigterm(
        [*CLI, "view", *map(str, demo_logs), "--save", str(out)], "part.rrd.*.partial", tmp_path
    )
    assert child.returncode == 130, (stdout, stderr)
    assert "shown" not in stdout  # stopped before the whole log was shown
    assert f"view: stopped; {out} was not written" in stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home"]  # no .rrd, no partial


def test_a_live_view_stopped_by_sigterm_ends_as_with_ctrl_c(tmp_path: Path, private_home: Path) -> None:
    """Its summary, its .rrd (private, the partial too while it ran), exit 0."""
    endpoint, out = f"ipc://{tmp_path}/radar.sock", tmp_path / "live.rrd"
    stamp = time.time_ns()
    with Publisher(endpoint, "radar/front", "radar") as radar:

        def publish(partial: Path) -> None:
            assert partial.stat().st_mode & 0o777 == 0o600
            for seq in range(60):  # 3 s of 20 Hz radar
                radar.publish(stamp + seq * 50_000_000, detections=np.ones((3, 5), np.float32))
                time.sleep(0.05)

        child, stdout, stderr = _stopped_by_sigterm(
            [*CLI, "view", endpoint, "--save", str(out)], "live.rrd.*.partial", tmp_path, publish
        )
    assert child.returncode == 0, stderr
    received = int(re.search(r"viewer: received (\d+)", stdout).group(1))  # type: ignore[union-attr]
    assert received > 0 and f"wrote {out}" in stdout
    assert out.stat().st_mode & 0o777 == 0o600 and not list(tmp_path.glob("*.partial"))
    assert rrd_rows(out)["/ego/radar/front"] == received + 1  # and its static mount


def test_a_live_view_that_receives_nothing_says_so_and_fails(tmp_path: Path, private_home: Path) -> None:
    """As `record`: no "received 0" and exit 0, no empty .rrd blocking a retry under its name."""
    endpoint = f"ipc://{tmp_path}/nobody.sock"
    done = subprocess.run(
        [*CLI, "view", endpoint, "--save", str(tmp_path / "none.rrd"), "--duration", "1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done.stderr
    said = (
        rf"view: nothing received in 1\.\d s from {re.escape(endpoint)} \(is it running\?\); no \.rrd written"
    )
    assert re.search(said, done.stderr), done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home"]


def test_a_live_view_that_got_only_malformed_messages_says_so(tmp_path: Path, private_home: Path) -> None:
    """ "Nothing received (is it running?)" sent the user to a publisher that was running: its messages
    came and were refused."""
    endpoint = f"ipc://{tmp_path}/junk.sock"
    context = zmq.Context.instance()
    junk = context.socket(zmq.PUB)
    junk.bind(endpoint)
    child = subprocess.Popen([*CLI, "view", endpoint, "--duration", "3", "--save", str(tmp_path / "j.rrd")],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        while child.poll() is None:
            junk.send_multipart([b"radar/front", b"\xc1 not msgpack"])
            time.sleep(0.05)
        _, stderr = child.communicate(timeout=60)
    finally:
        junk.close(0)
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 1, stderr
    assert "view: nothing received in" in stderr and "malformed, dropped: {" in stderr, stderr
