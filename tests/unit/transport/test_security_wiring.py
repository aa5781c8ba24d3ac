"""How the nodes apply [security]: CURVE on tcp endpoints only, ipc sockets in private directories, key
files checked before anything starts."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import zmq
from security import host_config, host_keys

from fusion_pipeline.config import parse_config
from fusion_pipeline.errors import ConfigError
from fusion_pipeline.node import check_host
from fusion_pipeline.ops.rundir import check_run_host
from fusion_pipeline.transport import (
    MAX_SUBSCRIPTION_BYTES,
    Curve,
    Endpoint,
    EndpointError,
    Publisher,
    Subscriber,
    generate_keys,
    prepare_bind,
)

CONFIG = """
[[streams]]
name = "radar/front"
modality = "radar"
endpoint = "{endpoint}"
rate_hz = 20
[sync]
reference = "radar/front"
[security]
{security}
"""


def test_curve_for_applies_to_tcp_endpoints_only(tmp_path: Path) -> None:
    secure = 'certificate = "k/host.key_secret"\nauthorized_keys = "k/authorized"'
    config = parse_config(CONFIG.format(endpoint="tcp://10.0.0.1:5555", security=secure))
    curve = config.curve_for("tcp://10.0.0.1:5555")
    assert curve == Curve(Path("k/host.key_secret"), Path("k/authorized"), Path("k/host.key"))
    assert config.curve_for("ipc:///run/x/results.sock") is None
    assert config.curve_for(["ipc:///run/x/a.sock", "tcp://10.0.0.1:5555"]) == curve
    insecure = parse_config(CONFIG.format(endpoint="tcp://10.0.0.1:5555", security="insecure = true"))
    assert insecure.curve_for("tcp://10.0.0.1:5555") is None


def test_ipc_sockets_are_bound_only_in_private_directories(ipc_dir: Path) -> None:
    fresh = ipc_dir / "not" / "there"
    with Publisher(f"ipc://{fresh}/a.sock", "s", "radar"):
        assert fresh.stat().st_mode & 0o777 == 0o700  # a missing run dir is created private
    shared = ipc_dir / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    with pytest.raises(EndpointError, match=r"has mode 0755.*only their user"):
        Publisher(f"ipc://{shared}/a.sock", "s", "radar")
    assert not (shared / "a.sock").exists()


@pytest.mark.parametrize("create", [True, False])
def test_a_socket_directory_that_cannot_be_made_is_said_not_raised_as_os_error(
    ipc_dir: Path, create: bool
) -> None:
    """A run dir under a file, or that is a file: one line naming the endpoint, also in a dry run."""
    file = ipc_dir / "afile"
    file.write_text("")
    with pytest.raises(EndpointError, match=rf"{file}/x'.* cannot be created"):
        prepare_bind(Endpoint(f"ipc://{file}/x/a.sock"), create=create)
    with pytest.raises(EndpointError, match=rf"its directory '{file}' is not a directory"):
        prepare_bind(Endpoint(f"ipc://{file}/a.sock"), create=create)
    assert file.is_file() and file.read_text() == ""


@pytest.mark.parametrize("create", [True, False])
def test_a_socket_directory_this_user_cannot_search_is_said_not_raised(
    ipc_dir: Path, create: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another user's 0700 directory above the run dir: Path.exists raises EACCES (tests run as root here,
    so the error is injected where the file system would give it)."""

    def denied(path: Path, *args: object, **kwargs: object) -> bool:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(Path, "exists", denied)
    with pytest.raises(
        EndpointError, match=r"ipc:///x/y/a.sock': its directory '/x/y' cannot be .* \(Permission denied\)"
    ):
        prepare_bind(Endpoint("ipc:///x/y/a.sock"), create=create)


def test_one_socket_serves_a_curve_tcp_peer_and_a_plain_ipc_peer(tmp_path: Path, ipc_dir: Path) -> None:
    """A recorder subscribes to tcp drivers and ipc results with one socket: CURVE must stay on tcp."""
    server = generate_keys(tmp_path / "keys", "server")
    client = generate_keys(tmp_path / "keys", "client")
    authorized = tmp_path / "authorized"
    authorized.mkdir()
    (authorized / "client.key").write_bytes(client[0].read_bytes())
    tcp = Publisher("tcp://127.0.0.1:*", "radar/front", "radar", curve=Curve(server[1], authorized))
    ipc = Publisher(f"ipc://{ipc_dir}/results.sock", "result/fused", "result")
    with tcp, ipc:
        curve = Curve(client[1], server_key=server[0])
        # tcp first: the ipc endpoint attached after it must not inherit the CURVE client settings.
        with Subscriber([tcp.last_endpoint, ipc.last_endpoint], curve=curve) as sub:
            seen: set[str] = set()
            deadline = time.monotonic() + 10
            while seen != {"radar/front", "result/fused"} and time.monotonic() < deadline:
                tcp.publish(time.time_ns())
                ipc.publish(time.time_ns())
                sample = sub.recv(timeout_ms=50)
                if sample is not None:
                    seen.add(sample.stream)
    assert seen == {"radar/front", "result/fused"}


def test_a_publisher_refuses_an_oversized_subscription(ipc_dir: Path) -> None:
    """A publisher receives subscriptions: one larger than MAX_SUBSCRIPTION_BYTES never registers."""
    url = f"ipc://{ipc_dir}/pub.sock"
    with Publisher(url, "s", "radar", lossless=True) as pub, zmq.Context() as context:
        rogue = context.socket(zmq.SUB)
        rogue.linger = 0
        rogue.subscribe(b"x" * (MAX_SUBSCRIPTION_BYTES + 1))
        rogue.connect(url)
        assert not pub.wait_for_subscribers(1, timeout_s=1.0)
        rogue.close()
        with Subscriber(url, topics=["s"]):
            assert pub.wait_for_subscribers(1, timeout_s=10.0)


@pytest.fixture
def site(tmp_path: Path) -> dict[str, Path]:
    return host_keys(tmp_path)


def test_key_files_are_checked_before_anything_starts(site: dict[str, Path], ipc_dir: Path) -> None:
    secret, authorized, empty = site["certificate"], site["authorized"], site["empty"]
    good = {"certificate": secret, "authorized_keys": authorized}
    check_host(parse_config(host_config(good)), ipc_dir, "host.toml")
    absent = secret.parent / "absent.key_secret"
    public = secret.with_suffix(".key")
    for security, expected in [
        (
            {**good, "certificate": absent},
            f"security.certificate: CURVE certificate '{absent}' does not exist$",
        ),
        ({**good, "certificate": public}, "security.certificate: .* has no secret key"),
        ({**good, "server_key": secret.parent / "no.key"}, "security.server_key: .*no.key' does not exist$"),
        (
            {**good, "authorized_keys": empty / "absent"},
            f"security.authorized_keys: .*{empty}/absent: does not",
        ),
        ({**good, "authorized_keys": public}, "security.authorized_keys: .*: is not a directory"),
        # This host binds tcp endpoints: an allow-list that names nobody is a mistake.
        ({**good, "authorized_keys": empty}, "security.authorized_keys: .*holds no public certificate"),
    ]:
        with pytest.raises(ConfigError, match=f"^host.toml: {expected}"):
            check_host(parse_config(host_config(security)), ipc_dir, "host.toml")
    secret.chmod(0o644)
    with pytest.raises(ConfigError, match=f"security.certificate: .*mode 0644.*: chmod 600 {secret}$"):
        check_host(parse_config(host_config(good)), ipc_dir, "host.toml")
    secret.chmod(0o600)
    # A host that binds no tcp endpoint (it connects to an external driver's) may keep an empty allow-list.
    client_only = host_config(
        {**good, "authorized_keys": empty}, driver="external", output="ipc://{run_dir}/r.sock"
    )
    check_host(parse_config(client_only), ipc_dir, "host.toml")


def test_a_server_key_that_is_not_the_hosts_own_is_refused_where_it_dials_its_own_tcp_servers(
    site: dict[str, Path], tmp_path: Path, ipc_dir: Path
) -> None:
    """Its ingest expected the peer's key of its own simulated driver, which serves with the host's: every
    handshake failed, nothing came, and the run exited 0."""
    (site["authorized"] / "host.key").write_bytes(site["certificate"].with_suffix(".key").read_bytes())
    peer = generate_keys(tmp_path / "peer", "vehicle")[0]
    good = {"certificate": site["certificate"], "authorized_keys": site["authorized"]}
    check_run_host(parse_config(host_config(good)), None, ipc_dir, [], create=False)
    config = parse_config(host_config({**good, "server_key": peer}))
    with pytest.raises(ConfigError, match=r"security.server_key .*vehicle.key is not this host's own key"):
        check_run_host(config, None, ipc_dir, [], create=False)
    check_run_host(config, None, ipc_dir, [], create=False, own_drivers=False)  # a drivers-only host
    # Its own servers' clients all on ipc (the driver external): the peer's key is what it dials.
    external = host_config({**good, "server_key": peer}, driver="external", output="tcp://127.0.0.1:5602")
    check_run_host(parse_config(external), None, ipc_dir, [], create=False)
    # Its own key given as server_key is the default said explicitly.
    own = host_config({**good, "server_key": site["certificate"].with_suffix(".key")})
    check_run_host(parse_config(own), None, ipc_dir, [], create=False)
    # Composed, its ingest endpoints are not dialled (the frames pass in-process): a tcp one is no matter.
    composed = external.replace('endpoint = "', 'ingest_endpoint = "tcp://127.0.0.1:5603"\nendpoint = "', 1)
    composed = '[pipeline]\ncomposition = "composed"\n' + composed
    check_run_host(parse_config(composed), None, ipc_dir, [], create=False)
    with pytest.raises(ConfigError, match=r"streams\[0\].ingest_endpoint\)"):
        check_run_host(parse_config(composed.replace('"composed"', '"processes"')), None, ipc_dir, [], False)


@pytest.mark.parametrize("stale", [False, True])
def test_a_default_server_key_that_is_missing_or_stale_is_refused(
    site: dict[str, Path], tmp_path: Path, ipc_dir: Path, stale: bool
) -> None:
    """server_key unset means the NAME.key beside the certificate: missing, or left from an older
    keypair, every client node crash-looped or was refused, and the checks said nothing."""
    (site["authorized"] / "host.key").write_bytes(site["certificate"].with_suffix(".key").read_bytes())
    default = site["certificate"].with_suffix(".key")
    default.unlink()
    if stale:
        default.write_bytes(generate_keys(tmp_path / "old", "host")[0].read_bytes())
    good = {"certificate": site["certificate"], "authorized_keys": site["authorized"]}
    why = "is not this host's own key" if stale else "does not exist"
    with pytest.raises(
        ConfigError, match=rf"security.server_key \(not set: the .key beside the certificate\).*{why}"
    ):
        check_run_host(parse_config(host_config(good)), None, ipc_dir, [], create=False)
