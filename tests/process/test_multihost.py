"""A graph split across two hosts over tcp with CURVE: the documented example of docs/OPERATIONS.md
("Multi-host over tcp with CURVE"), run from configs/multihost/vehicle.toml and compute.toml with only
their key paths, run directories (and, on loopback, addresses) substituted.

Mode: the "vehicle" and "compute" hosts are two network namespaces joined by a veth pair, with the
documented addresses, when `ip netns` and veth pairs work here (root on Linux). Otherwise they are two
groups of processes on tcp 127.0.0.1, and the test says so: it prints the mode and records it as the
`hosts` property (junit XML). It never skips. Takes about 20 s.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
from paths import ROOT
from pipeline_harness import present

from fusion_pipeline.config import load_config
from fusion_pipeline.transport import Sample, Subscriber, generate_keys

CONFIGS = ROOT / "configs" / "multihost"
VEHICLE_IP = "192.168.50.1"  # the documented addresses (configs/multihost/*.toml)
COMPUTE_IP = "192.168.50.2"
PORTS = ("5555", "5556")  # lidar/top, radar/front
ETC, RUN = "/etc/fusion-pipeline", "/run/fusion-pipeline"


@dataclass
class Hosts:
    """How to run a command on each host, and what the configs' addresses become."""

    mode: str
    prefix: dict[str, list[str]]
    replace: dict[str, str]


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


def _netns(names: dict[str, str]) -> bool:
    """Two namespaces joined by a veth pair with the documented addresses; False where that fails."""
    vehicle, compute = names["vehicle"], names["compute"]
    try:
        _ip("netns", "add", vehicle)
        _ip("netns", "add", compute)
        _ip("link", "add", vehicle, "type", "veth", "peer", "name", compute)
        for host, address in ((vehicle, VEHICLE_IP), (compute, COMPUTE_IP)):
            _ip("link", "set", host, "netns", host)
            _ip("-n", host, "addr", "add", f"{address}/24", "dev", host)
            _ip("-n", host, "link", "set", host, "up")
            _ip("-n", host, "link", "set", "lo", "up")  # the supervisor's metrics listen on 127.0.0.1
    except (OSError, subprocess.SubprocessError):
        return False
    return True


def _free_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


@pytest.fixture
def hosts(record_property) -> Iterator[Hosts]:
    names = {"vehicle": f"fpv{os.getpid()}", "compute": f"fpc{os.getpid()}"}
    if _netns(names):
        found = Hosts("netns", {h: ["ip", "netns", "exec", n] for h, n in names.items()}, {})
        print(f"hosts: two network namespaces {names} joined by veth ({VEHICLE_IP} <-> {COMPUTE_IP})")
    else:
        replace = {VEHICLE_IP: "127.0.0.1", **{f":{p}": f":{_free_port()}" for p in PORTS}}
        found = Hosts("loopback", {"vehicle": [], "compute": []}, replace)
        print("hosts: network namespaces unavailable here; two process groups on tcp 127.0.0.1 instead")
    record_property("hosts", found.mode)
    try:
        yield found
    finally:
        # Deleting a namespace deletes the veth end in it; a failed setup may have left one outside.
        for name in names.values():
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)
            subprocess.run(["ip", "link", "del", name], capture_output=True, timeout=10)


@dataclass
class Site:
    """One host's files: /etc/fusion-pipeline and /run/fusion-pipeline of the documented example."""

    etc: Path
    run: Path

    def config(self, name: str, hosts: Hosts, saved_as: str = "", **more: str) -> Path:
        """configs/multihost/NAME.toml with this site's paths and the hosts' addresses (and `more`)."""
        text = (CONFIGS / f"{name}.toml").read_text()
        for old, new in {**more, ETC: str(self.etc), RUN: str(self.run), **hosts.replace}.items():
            assert old in text, f"{name}.toml no longer contains {old!r}"
            text = text.replace(old, new)
        path = self.etc / f"{saved_as or name}.toml"
        path.write_text(text)
        return path


@pytest.fixture
def sites(tmp_path: Path, run_cli) -> Iterator[dict[str, Site]]:
    """Keys made and copied as docs/OPERATIONS.md says; a short run dir (ipc paths are limited)."""
    short = Path(tempfile.mkdtemp(prefix="fp-"))
    made = {name: Site(tmp_path / name, short / name) for name in ("vehicle", "compute")}
    for name, site in made.items():
        done = run_cli("keys", "generate", str(site.etc / "keys"), "--name", name)
        assert done.returncode == 0, done.stderr
        (site.etc / "authorized").mkdir()
    shutil.copy(made["compute"].etc / "keys" / "compute.key", made["vehicle"].etc / "authorized")
    (made["compute"].etc / "servers").mkdir()
    shutil.copy(made["vehicle"].etc / "keys" / "vehicle.key", made["compute"].etc / "servers")
    try:
        yield made
    finally:
        shutil.rmtree(short, ignore_errors=True)


class Processes:
    """Processes the test starts on either host; all killed at the end (the supervisor's nodes too)."""

    def __init__(self, hosts: Hosts, logs: Path) -> None:
        self.hosts, self.logs = hosts, logs
        self.started: dict[str, subprocess.Popen[str]] = {}
        self.services: set[str] = set()  # processes that must not exit before the test stops them

    def start(self, host: str, name: str, *argv: str, service: bool = True) -> subprocess.Popen[str]:
        log = (self.logs / f"{name}.log").open("w")
        process = subprocess.Popen(
            [*self.hosts.prefix[host], *argv],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
        log.close()
        self.started[name] = process
        if service:
            self.services.add(name)
        return process

    def driver(self, name: str, config: Path, stream: str, run_dir: Path) -> subprocess.Popen[str]:
        argv = ["-m", "fusion_pipeline.nodes.sensor_sim", "--config", str(config), "--run-dir", str(run_dir)]
        return self.start("vehicle", name, sys.executable, *argv, "--stream", stream)

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def failed(self) -> str:
        """The logs of the services that died, for an assertion message."""
        dead = [name for name in self.services if self.started[name].poll() is not None]
        return "\n".join(f"{name} exited {self.started[name].returncode}:\n{self.log(name)}" for name in dead)

    def stop(self, name: str) -> int:
        self.services.discard(name)
        self.started[name].send_signal(signal.SIGTERM)
        return self.started[name].wait(timeout=20)

    def kill_all(self, run_dir: Path) -> None:
        for process in self.started.values():
            if process.poll() is None:
                process.kill()
                process.wait()
        for proc in psutil.process_iter(["pid", "cmdline"]):  # nodes of our supervisor, if it was killed
            if str(run_dir) in (proc.info["cmdline"] or []):
                proc.kill()


def _collect(results: Subscriber, until, timeout_s: float, into: list[Sample], processes: Processes) -> None:
    deadline = time.monotonic() + timeout_s
    while not until(into):
        assert not processes.failed(), processes.failed()
        assert time.monotonic() < deadline, (
            f"no such result after {timeout_s} s ({len(into)} results)\n{processes.log('run')}"
        )
        sample = results.recv(timeout_ms=100)
        if sample is not None:
            into.append(sample)


def _security_only(config: Path, path: Path) -> Path:
    """A config file at `path` holding only the [security] section of `config`."""
    security = load_config(config).security
    keys = "".join(f'{key} = "{value}"\n' for key, value in security if isinstance(value, str) and value)
    path.write_text("[security]\n" + keys)
    return path


def test_graph_across_hosts_over_tcp_with_curve(hosts: Hosts, sites: dict[str, Site], tmp_path: Path) -> None:
    vehicle, compute = sites["vehicle"], sites["compute"]
    vehicle_toml = vehicle.config("vehicle", hosts)
    # A stranger binds the radar endpoint, impersonating the vehicle with a key the compute host does not
    # know: the ingest node must take nothing from it.
    stranger_key = generate_keys(tmp_path / "stranger", "stranger")[1]
    impostor_toml = vehicle.config(
        "vehicle", hosts, "impostor", **{f"{ETC}/keys/vehicle.key_secret": str(stranger_key)}
    )
    # Port 9464 is free in a namespace, not necessarily on a shared loopback.
    compute_toml = compute.config("compute", hosts, **{"127.0.0.1:9464": "127.0.0.1:0"})
    stranger_toml = compute.config(
        "compute", hosts, "stranger", **{f"{ETC}/keys/compute.key_secret": str(stranger_key)}
    )
    lidar_url = compute_toml.read_text().split('endpoint = "', 2)[1].split('"')[0]
    assert lidar_url.startswith("tcp://") and lidar_url.endswith(hosts.replace.get(":5555", ":5555"))

    processes = Processes(hosts, tmp_path)
    try:
        processes.start(
            "compute", "run", sys.executable, "-m", "fusion_pipeline.cli", "run", "-c", str(compute_toml)
        )
        processes.driver("lidar", vehicle_toml, "lidar/top", vehicle.run)
        processes.driver("radar-impostor", impostor_toml, "radar/front", vehicle.run)

        # `fusion-pipeline echo` on the compute host dials the vehicle's lidar driver twice: with the
        # compute key (in the vehicle's authorized_keys), and with a key the vehicle does not know.
        def echo(name: str, config: Path, count: int, timeout_s: int) -> subprocess.Popen[str]:
            argv = ["-m", "fusion_pipeline.cli", "echo", lidar_url, "--config", str(config)]
            argv += ["--count", str(count), "--timeout", str(timeout_s)]
            return processes.start("compute", name, sys.executable, *argv, service=False)

        # The allowed one with a file of the compute host's [security] alone, as a consumer's host has.
        allowed = echo("allowed-echo", _security_only(compute_toml, tmp_path / "consumer.toml"), 3, 30)
        stranger = echo("stranger-echo", stranger_toml, 1, 5)

        results: list[Sample] = []
        # ipc socket files are reachable from any network namespace: the test listens from here.
        with Subscriber(f"ipc://{compute.run}/results.sock", topics=["result/"], hwm=1000) as sub:
            _collect(sub, lambda r: len(r) >= 10, 90, results, processes)
            switched_ns = time.time_ns()
            assert processes.stop("radar-impostor") == 0
            processes.driver("radar", vehicle_toml, "radar/front", vehicle.run)
            _collect(sub, lambda r: any(present(s, "radar/front") for s in r), 60, results, processes)

        context = processes.log("run")
        before = [s for s in results if s.stamp_ns < switched_ns]
        assert len(before) >= 10, context
        assert not any(present(s, "radar/front") for s in before), "radar from an unknown key got in"
        assert all(present(s, "lidar/top") for s in results), "lidar (the reference) missing from a set"
        assert allowed.wait(timeout=30) == 0, processes.log("allowed-echo")
        assert processes.log("allowed-echo").count("lidar/top [lidar]") == 3
        assert stranger.wait(timeout=30) == 1, processes.log("stranger-echo")
        assert "lidar/top" not in processes.log("stranger-echo"), "an unknown key subscribed to lidar"
        assert processes.stop("run") == 0, processes.log("run")
        print(f"hosts={hosts.mode}: {len(results)} results; radar admitted only from the vehicle's key")
    finally:
        processes.kill_all(compute.run)


def test_each_hosts_config_checks_as_the_docs_say(sites: dict[str, Site], run_cli) -> None:
    """The vehicle runs its drivers alone: plain `config check` refused its config (its own key is not
    in its allow-list, which only a whole graph's ingest would need) though vehicle.toml says it passes."""
    loopback = Hosts("loopback", {"vehicle": [], "compute": []}, {VEHICLE_IP: "127.0.0.1"})
    vehicle = str(sites["vehicle"].config("vehicle", loopback))
    compute = str(sites["compute"].config("compute", loopback))
    assert run_cli("config", "check", "--drivers-only", "-c", vehicle).returncode == 0
    whole = run_cli("config", "check", "-c", vehicle)
    assert whole.returncode == 2 and "`config check --drivers-only`" in whole.stderr, whole.stderr
    assert run_cli("config", "check", "-c", compute).returncode == 0
