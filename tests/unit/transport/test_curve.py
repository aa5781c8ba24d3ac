"""CURVE on tcp within one process: a plain client cannot reach a CURVE server, a driver doing CURVE with
libzmq alone as PROTOCOL.md says admits only its allow-list, bad or readable
certificates and an allow-list that names no key are refused. Peers in their own processes:
tests/process/test_curve.py."""

import contextlib
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import zmq
from security import curve_keys, server_curve
from zmq.utils import z85

from fusion_pipeline.transport import Curve, Publisher, Sample, Subscriber, TransportError, encode, sockets


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, tuple[Path, Path]]:
    return curve_keys(tmp_path)


def test_plain_client_cannot_reach_a_curve_server(keys) -> None:
    """Nor does it connect again and again: the mismatch is said once and left alone."""
    pub = Publisher("tcp://127.0.0.1:*", "result/fused", "result", curve=server_curve(keys))
    with pub, Subscriber(pub.last_endpoint) as plain:
        deadline = time.monotonic() + 2.6  # more than two looks at the connections
        while time.monotonic() < deadline:
            pub.publish(1)
            assert plain.recv(timeout_ms=100) is None
        assert plain.reconnects == 0 and "security does not match" in plain.last_error


def test_a_handshake_the_peer_closes_is_said_to_a_plain_client(caplog: pytest.LogCaptureFixture) -> None:
    """A CURVE server sometimes closes on a plain client before saying the mismatch (libzmq's race):
    the client's handshake then fails with no detail. Said once, as a likely mismatch, not as silence."""
    with socket.create_server(("127.0.0.1", 0)) as server, caplog.at_level("WARNING"):
        server.settimeout(0.05)
        with Subscriber(f"tcp://127.0.0.1:{server.getsockname()[1]}") as plain:
            deadline = time.monotonic() + 2.6  # more than two looks at the connections
            while time.monotonic() < deadline:
                with contextlib.suppress(TimeoutError):
                    server.accept()[0].close()  # the peer closes in the handshake
                assert plain.recv(timeout_ms=50) is None
            assert "the peer closed the connection in its handshake" in plain.last_error
    said = [r for r in caplog.records if "closed the connection" in r.getMessage()]
    assert len(said) == 1 and plain.reconnects == 0


def test_a_peer_named_by_host_that_restarts_is_left_to_libzmq(keys) -> None:
    """libzmq names the connection it makes again by the address it resolved (127.0.0.1), not by the
    name given (localhost): still the same endpoint, not a dropped one."""
    first = Publisher("tcp://127.0.0.1:*", "s", "radar")
    port = first.last_endpoint.rsplit(":", 1)[1]
    with Subscriber(f"tcp://localhost:{port}") as sub:
        for pub in (first, None):
            pub = pub or Publisher(f"tcp://127.0.0.1:{port}", "s", "radar")
            with pub:
                deadline = time.monotonic() + 5
                while sub.recv(timeout_ms=100) is None and time.monotonic() < deadline:
                    pub.publish(5)
        deadline = time.monotonic() + 2.6
        while time.monotonic() < deadline:
            assert sub.recv(timeout_ms=100) is None
        assert sub.reconnects == 0


def test_a_refused_client_key_is_said_and_not_retried_at_once(keys, monkeypatch: pytest.MonkeyPatch) -> None:
    """The server's allow-list lacks the key: the subscriber says so and does not connect again every
    second (its reconnect is for connections libzmq dropped after a frame over the size limit)."""
    connects: list[str] = []
    attach = Subscriber._bind_or_connect
    monkeypatch.setattr(
        Subscriber, "_bind_or_connect", lambda self, e, bind: (connects.append(e.url), attach(self, e, bind))
    )
    pub = Publisher("tcp://127.0.0.1:*", "result/fused", "result", curve=server_curve(keys))
    stranger = Curve(certificate=keys["stranger"][1], server_key=keys["server"][0])
    endpoint = pub.last_endpoint
    with pub, Subscriber(endpoint, curve=stranger) as sub:
        deadline = time.monotonic() + 2.6  # more than two looks at the connections
        while time.monotonic() < deadline:
            pub.publish(1)
            assert sub.recv(timeout_ms=100) is None
        assert sub.reconnects == 0 and "refused this client's key" in sub.last_error
        # for the ingest node's heartbeat: a silent stream's reason in `status`
        assert sub.handshake_failing == {endpoint: "the CURVE server refused this client's key"}
    assert connects == [endpoint]  # the first connect only, within REFUSED_RETRY_S


def test_a_failing_handshake_is_no_longer_said_once_its_server_is_gone(
    keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A driver that refused the key and then stopped: "handshake failing" stayed the stream's reason
    for good, pointing at keys rather than at a dead driver."""
    monkeypatch.setattr(sockets, "REFUSED_RETRY_S", 1.0)
    stranger = Curve(certificate=keys["stranger"][1], server_key=keys["server"][0])
    driver = Publisher("tcp://127.0.0.1:*", "result/fused", "result", curve=server_curve(keys))
    with Subscriber(driver.last_endpoint, curve=stranger) as sub:
        with driver:
            deadline = time.monotonic() + 5
            while not sub.handshake_failing and time.monotonic() < deadline:
                sub.recv(timeout_ms=100)
            assert list(sub.handshake_failing.values()) == ["the CURVE server refused this client's key"]
        deadline = time.monotonic() + 6  # two retry periods, and a look
        while sub.handshake_failing and time.monotonic() < deadline:
            sub.recv(timeout_ms=100)
        assert sub.handshake_failing == {}


def test_a_server_with_another_key_than_server_key_is_said(keys, caplog: pytest.LogCaptureFixture) -> None:
    """Another program serves the port with a key not the config's server_key (a second driver, an
    impostor): the client's handshake fails with no detail, which libzmq retries itself. Said once,
    not as a bare silence."""
    impostor = Curve(certificate=keys["stranger"][1], authorized_keys=keys["authorized"][0])
    pub = Publisher("tcp://127.0.0.1:*", "result/fused", "result", curve=impostor)
    allowed = Curve(certificate=keys["allowed"][1], server_key=keys["server"][0])
    with pub, Subscriber(pub.last_endpoint, curve=allowed) as sub, caplog.at_level("WARNING"):
        deadline = time.monotonic() + 2.6  # more than two looks at the connections
        while time.monotonic() < deadline:
            pub.publish(1)
            assert sub.recv(timeout_ms=100) is None
        assert "most often the server's key is not this client's server_key" in sub.last_error
    said = [r for r in caplog.records if "server_key" in r.getMessage()]
    assert len(said) == 1 and sub.reconnects == 0


def test_bad_certificates_are_refused(keys, tmp_path: Path) -> None:
    with pytest.raises(TransportError, match="has no secret key"):
        Publisher(
            "tcp://127.0.0.1:*",
            "s",
            "m",
            curve=Curve(certificate=keys["server"][0], authorized_keys=tmp_path),
        )
    with pytest.raises(TransportError, match="absent.key_secret' does not exist"):
        Publisher(
            "tcp://127.0.0.1:*",
            "s",
            "m",
            curve=Curve(certificate=tmp_path / "absent.key_secret", authorized_keys=tmp_path),
        )
    with pytest.raises(TransportError, match="needs the server's public certificate"):
        Subscriber("tcp://127.0.0.1:5999", curve=Curve(certificate=keys["allowed"][1]))


def test_a_secret_others_can_read_is_refused_wherever_it_is_loaded(keys, tmp_path: Path) -> None:
    secret = keys["server"][1]
    secret.chmod(0o644)
    fix = f"chmod 600 {secret}"
    with pytest.raises(TransportError, match=rf"{secret}.*mode 0644.*{fix}"):
        Publisher("tcp://127.0.0.1:*", "s", "m", curve=server_curve(keys))
    # As a server_key (a client loads it for the public half), a secret in the file must be private too.
    client = Curve(certificate=keys["allowed"][1], server_key=secret)
    with pytest.raises(TransportError, match=rf"mode 0644.*{fix}"):
        Subscriber("tcp://127.0.0.1:5999", curve=client)
    secret.chmod(0o640)
    with pytest.raises(TransportError, match="mode 0640"):
        Publisher("tcp://127.0.0.1:*", "s", "m", curve=server_curve(keys))
    secret.chmod(0o600)
    Publisher("tcp://127.0.0.1:*", "s", "m", curve=server_curve(keys)).close()


def test_a_server_refuses_an_allow_list_that_names_no_key(keys, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    for directory, expected in [
        (tmp_path / "absent", "does not exist"),
        (tmp_path / "empty", r"holds no public certificate \(\*\.key\)"),
        (keys["allowed"][0], "is not a directory"),
    ]:
        curve = Curve(certificate=keys["server"][1], authorized_keys=directory)
        with pytest.raises(TransportError, match=rf"authorized_keys {directory}: {expected}"):
            Publisher("tcp://127.0.0.1:*", "s", "m", curve=curve)


def test_a_refused_client_is_let_in_once_the_server_takes_its_key(
    keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """libzmq never connects again after a refused handshake: a driver restarted with its allow-list
    fixed was never heard again, and the pipeline stayed silent for good."""
    monkeypatch.setattr(sockets, "REFUSED_RETRY_S", 1.0)
    stranger = Curve(certificate=keys["stranger"][1], server_key=keys["server"][0])
    first = Publisher("tcp://127.0.0.1:*", "result/fused", "result", curve=server_curve(keys))
    endpoint = first.last_endpoint
    with Subscriber(endpoint, curve=stranger) as sub:
        with first:
            deadline = time.monotonic() + 1.5
            while time.monotonic() < deadline:
                first.publish(1)
                assert sub.recv(timeout_ms=100) is None
        assert "refused this client's key; connecting again every 1 s" in sub.last_error
        (keys["authorized"][0] / "stranger.key").write_bytes(keys["stranger"][0].read_bytes())
        with Publisher(endpoint, "result/fused", "result", curve=server_curve(keys)) as fixed:
            deadline = time.monotonic() + 10
            received = None
            while received is None and time.monotonic() < deadline:
                fixed.publish(2)
                received = sub.recv(timeout_ms=100)
        assert received is not None and received.seq >= 0
        deadline = time.monotonic() + 3  # its look at the handshake that let it in: at most once a second
        while sub.handshake_failing and time.monotonic() < deadline:
            sub.recv(timeout_ms=100)
        assert sub.handshake_failing == {}  # no longer a silent stream's reason


def test_sockets_dropped_in_a_reference_cycle_do_not_hang_the_collector() -> None:
    """pyzmq's finalizer of a socket's own context terms it with the sockets still open (its list of them
    holds weak references, cleared first in cyclic garbage): a driver object holding a Publisher and a
    bound method of itself hung the process at the next collection."""
    code = (
        "import gc, sys, tempfile\n"
        f"sys.path.insert(0, {str(Path(__file__).parents[2] / 'support')!r})\n"
        "from pathlib import Path\n"
        "from security import curve_keys, server_curve\n"
        "from fusion_pipeline.transport import Curve, Publisher, Subscriber\n"
        # a CURVE server, so an authenticator thread too
        "keys = curve_keys(Path(tempfile.mkdtemp()))\n"
        "pub = Publisher('tcp://127.0.0.1:*', 's', 'radar', curve=server_curve(keys))\n"
        "sub = Subscriber(pub.last_endpoint, curve=Curve(keys['allowed'][1], server_key=keys['server'][0]))\n"
        "pub.cycle, sub.cycle = pub, sub\n"
        "pub = sub = None\n"
        "gc.collect()\n"
        "print('collected')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and "collected" in done.stdout, done.stderr


def _z85(path: Path, key: str) -> bytes:
    """A key of a certificate file, read as PROTOCOL.md section 1.1 describes the format."""
    found = re.search(rf'^\s*{key} = "(.{{40}})"\s*$', path.read_text(), re.MULTILINE)
    assert found is not None, f"{path}: no {key}"
    return z85.decode(found.group(1).encode())


def _zap_handler(context: zmq.Context, allowed: set[bytes], stop: threading.Event) -> threading.Thread:
    """The ZAP handler of PROTOCOL.md section 1.1, in libzmq terms only."""
    zap = context.socket(zmq.REP)
    zap.bind("inproc://zeromq.zap.01")

    def answer() -> None:
        with zap:
            while not stop.is_set():
                if not zap.poll(50):
                    continue
                version, request_id, _domain, _address, _routing_id, mechanism, *credentials = (
                    zap.recv_multipart()
                )
                admitted = mechanism == b"CURVE" and credentials[0] in allowed
                status = (b"200", b"OK") if admitted else (b"400", b"not in the allow-list")
                zap.send_multipart([version, request_id, *status, b"", b""])

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    return thread


def test_a_driver_doing_curve_as_the_protocol_says_admits_only_its_allow_list(keys) -> None:
    """A driver in another language, here raw libzmq calls: its own ZAP handler over the allow-list's
    files, a CURVE server socket from the secret certificate. The allowed client receives, a stranger is
    refused and says so."""
    context, stop = zmq.Context(), threading.Event()
    allowed = {_z85(path, "public-key") for path in keys["authorized"][0].glob("*.key")}
    handler = _zap_handler(context, allowed, stop)
    driver = context.socket(zmq.PUB)
    driver.curve_server = True
    driver.curve_secretkey = _z85(keys["server"][1], "secret-key")
    port = driver.bind_to_random_port("tcp://127.0.0.1")
    endpoint = f"tcp://127.0.0.1:{port}"
    client = Curve(certificate=keys["allowed"][1], server_key=keys["server"][0])
    stranger = Curve(certificate=keys["stranger"][1], server_key=keys["server"][0])
    try:
        with Subscriber(endpoint, curve=client) as sub, Subscriber(endpoint, curve=stranger) as other:
            received, refused = None, None
            deadline = time.monotonic() + 5
            while received is None and time.monotonic() < deadline:
                driver.send_multipart(
                    encode(Sample("radar/front", "radar", seq=7, stamp_ns=1, frame_id="radar"))
                )
                received = sub.recv(timeout_ms=100)
                refused = other.recv(timeout_ms=0) or refused
            deadline = time.monotonic() + 2.6  # more than two looks at the stranger's connections
            while time.monotonic() < deadline:
                refused = other.recv(timeout_ms=100) or refused
        assert received is not None and received.seq == 7
        assert refused is None and "refused this client's key" in other.last_error
    finally:
        stop.set()
        handler.join()
        driver.close(linger=0)
        context.term()
