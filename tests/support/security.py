"""Keys and configs for the tests of [security]: CURVE keypairs with an allow-list, a host's config."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fusion_pipeline.transport import Curve, Publisher, generate_keys

HOST = """
[[streams]]
name = "radar/front"
modality = "radar"
endpoint = "{stream}"
driver = "{driver}"
rate_hz = 20
[sync]
reference = "radar/front"
[model]
unbound_inputs = ["camera", "lidar", "audio"]  # the default model's inputs no stream feeds: always absent
[output]
endpoint = "{output}"
[metrics]
enabled = false
[security]
{security}
"""


def curve_keys(folder: Path) -> dict[str, tuple[Path, Path]]:
    """Server, allowed client and stranger keypairs; only the allowed client's public key is authorized."""
    pairs = {name: generate_keys(folder / "keys", name) for name in ("server", "allowed", "stranger")}
    authorized = folder / "authorized"
    authorized.mkdir()
    (authorized / "allowed.key").write_bytes(pairs["allowed"][0].read_bytes())
    pairs["authorized"] = (authorized, authorized)
    return pairs


def server_curve(keys: dict[str, tuple[Path, Path]]) -> Curve:
    return Curve(certificate=keys["server"][1], authorized_keys=keys["authorized"][0])


def host_keys(folder: Path) -> dict[str, Path]:
    """A host's keys as `keys generate` leaves them, a client's public key in its allow-list."""
    certificate = generate_keys(folder / "keys", "host")[1]
    client = generate_keys(folder / "client", "client")[0]
    authorized = folder / "authorized"
    authorized.mkdir()
    (authorized / "client.key").write_bytes(client.read_bytes())
    (folder / "empty").mkdir()
    return {"certificate": certificate, "authorized": authorized, "empty": folder / "empty"}


def host_config(
    security: dict[str, Path],
    stream: str = "tcp://127.0.0.1:5601",
    driver: str = "sim",
    output: str = "tcp://127.0.0.1:5602",
) -> str:
    """A config whose radar driver and results bind tcp on this host, unless told otherwise."""
    lines = "\n".join(f'{key} = "{value}"' for key, value in security.items())
    return HOST.format(stream=stream, driver=driver, output=output, security=lines)


@contextmanager
def refusing_driver(folder: Path) -> Iterator[tuple[str, str]]:
    """A radar driver serving CURVE on a free tcp port of 127.0.0.1, its allow-list lacking the key of
    the host made in `folder` (`host_keys`): its endpoint, and the config of that host dialling it."""
    site = host_keys(folder)
    driver = generate_keys(folder / "driver", "driver")
    others = folder / "driver-authorized"
    others.mkdir()
    (others / "other.key").write_bytes(generate_keys(folder / "other", "other")[0].read_bytes())
    security = {
        "certificate": site["certificate"],
        "authorized_keys": site["authorized"],
        "server_key": driver[0],
    }
    curve = Curve(driver[1], authorized_keys=others)
    with Publisher("tcp://127.0.0.1:*", "radar/front", "radar", curve=curve) as publisher:
        endpoint = publisher.last_endpoint
        yield endpoint, host_config(security, endpoint, driver="external", output="ipc://{run_dir}/r.sock")
