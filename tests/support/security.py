"""Keys and configs for the tests of [security]: CURVE keypairs with an allow-list, a host's config."""

from __future__ import annotations

from pathlib import Path

from fusion_pipeline.transport import Curve, generate_keys

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
