"""CURVE on tcp: an allowed client is accepted, a client with an unknown key can neither publish into the
pipeline nor subscribe to it. Each client is its own process."""

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from paths import SUPPORT
from security import curve_keys, server_curve

from fusion_pipeline.transport import Curve, Publisher, Subscriber, generate_keys


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, tuple[Path, Path]]:
    return curve_keys(tmp_path)


def _peer(role: str, endpoint: str, client: tuple[Path, Path], server: tuple[Path, Path], seconds: float):
    return subprocess.Popen(
        [
            sys.executable,
            str(SUPPORT / "curve_peer.py"),
            role,
            endpoint,
            str(client[1]),
            str(server[0]),
            str(seconds),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )


def test_only_authorized_clients_can_subscribe(keys) -> None:
    with Publisher("tcp://127.0.0.1:*", "result/fused", "result", curve=server_curve(keys)) as pub:
        endpoint = pub.last_endpoint
        allowed = _peer("sub", endpoint, keys["allowed"], keys["server"], 3)
        stranger = _peer("sub", endpoint, keys["stranger"], keys["server"], 3)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            pub.publish(time.time_ns(), probs=np.ones(5, np.float32))
            time.sleep(0.02)
        allowed_out, _ = allowed.communicate(timeout=10)
        stranger_out, _ = stranger.communicate(timeout=10)
    assert len(allowed_out.split()) > 20, "the allowed client received nothing"
    assert stranger_out == "", "a client with an unknown key received results"


def test_only_authorized_drivers_can_publish_into_the_pipeline(keys) -> None:
    # The pipeline side binds and is the CURVE server; drivers connect as clients.
    with Subscriber("tcp://127.0.0.1:*", bind=True, curve=server_curve(keys)) as sub:
        endpoint = sub.last_endpoint
        stranger = _peer("pub", endpoint, keys["stranger"], keys["server"], 2)
        stranger_got = _receive_for(sub, 2.5)
        stranger.wait(10)
        allowed = _peer("pub", endpoint, keys["allowed"], keys["server"], 2)
        allowed_got = _receive_for(sub, 2.5)
        allowed.wait(10)
    assert stranger_got == 0, "samples from a driver with an unknown key entered the pipeline"
    assert allowed_got > 20


def _receive_for(sub: Subscriber, seconds: float) -> int:
    count = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if sub.recv(timeout_ms=100) is not None:
            count += 1
    return count


def test_keys_generate_command(tmp_path: Path, run_cli) -> None:
    done = run_cli("keys", "generate", str(tmp_path / "k"), "--name", "robot1")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "k" / "robot1.key").exists()
    assert (tmp_path / "k" / "robot1.key_secret").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "k").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "k" / "robot1.key").stat().st_mode & 0o777 == 0o644
    # Again: peers trust the first public key, so the pair is not replaced.
    secret = (tmp_path / "k" / "robot1.key_secret").read_bytes()
    again = run_cli("keys", "generate", str(tmp_path / "k"), "--name", "robot1")
    assert again.returncode == 2 and "robot1.key exists already; not replacing a keypair" in again.stderr
    assert (tmp_path / "k" / "robot1.key_secret").read_bytes() == secret
    # A directory other users can enter does not get a secret key.
    (tmp_path / "open").mkdir(mode=0o755)
    (tmp_path / "open").chmod(0o755)
    loose = run_cli("keys", "generate", str(tmp_path / "open"))
    assert loose.returncode == 2 and "mode 0755; a secret key needs a directory only its user" in loose.stderr
    assert not list((tmp_path / "open").iterdir())


def test_a_fresh_random_client_key_receives_nothing(keys, tmp_path: Path, monkeypatch) -> None:
    """The allow-list is a directory, whatever its name: one called "*" (pyzmq's allow-any) lets in only
    the keys in it, never a client with a key made a moment ago."""
    monkeypatch.chdir(tmp_path)
    Path("*").mkdir()
    (Path("*") / "allowed.key").write_bytes(keys["allowed"][0].read_bytes())
    fresh = generate_keys(tmp_path / "fresh", "fresh")
    curve = Curve(certificate=keys["server"][1], authorized_keys=Path("*"))
    with Publisher("tcp://127.0.0.1:*", "result/fused", "result", curve=curve) as pub:
        endpoint = pub.last_endpoint
        allowed = _peer("sub", endpoint, keys["allowed"], keys["server"], 3)
        stranger = _peer("sub", endpoint, fresh, keys["server"], 3)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            pub.publish(time.time_ns(), probs=np.ones(5, np.float32))
            time.sleep(0.02)
        allowed_out, _ = allowed.communicate(timeout=10)
        stranger_out, _ = stranger.communicate(timeout=10)
    assert len(allowed_out.split()) > 20, "the allowed client received nothing"
    assert stranger_out == "", "a client with a fresh random key received results"
