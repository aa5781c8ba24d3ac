"""Key files, the pure parts: `keys generate` takes only a plain name, certificates and allow-lists are
refused, in one line naming the file, when missing, exposed to other users or holding anything unread.
CURVE on sockets: test_curve.py; the checks before a run starts: test_security_wiring.py."""

import os
import shutil
from pathlib import Path

import pytest

from fusion_pipeline.cli import main
from fusion_pipeline.transport.errors import KeysError
from fusion_pipeline.transport.keys import generate_keys, load_allow_list, load_certificate


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("../leaked", "contains a path separator"),
        ("/tmp/abs", "contains a path separator"),
        ("sub/x", "contains a path separator"),
        ("", "is empty"),
        (".key", "starts with a dot"),
    ],
)
def test_keys_generate_takes_only_a_plain_name(tmp_path: Path, capsys, name: str, problem: str) -> None:
    keys = tmp_path / "keys"
    with pytest.raises(SystemExit) as exit_:
        main(["keys", "generate", str(keys), "--name", name])
    assert exit_.value.code == 2
    error = capsys.readouterr().err.splitlines()[-1]
    assert error == (
        f"fusion-pipeline keys generate: error: argument --name: {name!r} {problem}; give a plain file "
        "name, such as 'vehicle'"
    )
    assert not keys.exists() and not (tmp_path / "leaked.key_secret").exists()
    with pytest.raises(KeysError, match=f"keypair name {name!r} {problem}"):  # the library, too
        generate_keys(keys, name)
    assert main(["keys", "generate", str(keys), "--name", "vehicle"]) == 0
    assert sorted(p.name for p in keys.iterdir()) == ["vehicle.key", "vehicle.key_secret"]


def _allow_list(tmp_path: Path) -> Path:
    """An authorized_keys directory as the docs make it, holding one client's public certificate."""
    public = generate_keys(tmp_path / "keys", "client")[0]
    authorized = tmp_path / "authorized"
    authorized.mkdir(mode=0o700)
    (authorized / "client.key").write_bytes(public.read_bytes())
    return authorized


def test_an_allow_list_holding_anything_but_client_keys_is_refused(tmp_path: Path) -> None:
    """Nothing in it is skipped unread: a `.key` (no suffix to Path) or a `.key.off` would be a client
    silently left out, or thought revoked while its file is still there."""
    authorized = _allow_list(tmp_path)
    assert len(load_allow_list(authorized, need_keys=True)) == 1
    public = (authorized / "client.key").read_bytes()
    (authorized / ".key").write_bytes(public)
    (authorized / "old.key.off").write_bytes(public)
    (authorized / "sub.key").mkdir()
    expected = (
        f"authorized_keys {authorized}: holds '.key' (a name starting with a dot), 'old.key.off' (not "
        "NAME.key), 'sub.key' (not a file); only the clients' NAME.key files belong here (move the "
        "others out)"
    )
    with pytest.raises(KeysError) as refused:
        load_allow_list(authorized, need_keys=True)
    assert str(refused.value) == expected


def test_a_kubernetes_volume_or_a_keys_directory_is_an_allow_list(tmp_path: Path) -> None:
    """A Secret volume's NAME.key links into `..data`, itself a link to `..TIMESTAMP/`; a host's keys
    directory holds its own NAME.key_secret beside the public keys: both load as before."""
    authorized = tmp_path / "volume"
    (authorized / "..2026_12_07_03_00_00.1").mkdir(parents=True)
    generate_keys(tmp_path / "keys", "client")
    shutil.copy(tmp_path / "keys/client.key", authorized / "..2026_12_07_03_00_00.1/client.key")
    (authorized / "..data").symlink_to("..2026_12_07_03_00_00.1")
    (authorized / "client.key").symlink_to("..data/client.key")
    assert len(load_allow_list(authorized, need_keys=True)) == 1
    assert len(load_allow_list(tmp_path / "keys", need_keys=True)) == 1  # client.key; its secret passed over


@pytest.mark.parametrize("mode", [0o777, 0o775, 0o757])
def test_an_allow_list_others_can_write_is_refused(tmp_path: Path, mode: int) -> None:
    authorized = _allow_list(tmp_path)
    authorized.chmod(mode)
    with pytest.raises(KeysError) as refused:
        load_allow_list(authorized, need_keys=False)
    assert str(refused.value) == (
        f"authorized_keys {authorized} has mode {mode:04o}, so other users can add a client key to it: "
        f"chmod go-w {authorized}"
    )
    authorized.chmod(0o755)  # readable by all is fine: it holds public keys
    key = authorized / "client.key"
    key.chmod(0o666)
    with pytest.raises(
        KeysError, match=rf"^authorized_keys {authorized}: client.key has mode 0666, so other"
    ):
        load_allow_list(authorized, need_keys=False)
    key.chmod(0o644)
    assert len(load_allow_list(authorized, need_keys=False)) == 1


def test_an_allow_list_of_another_user_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Root's directory is accepted (root can do anything anyway), another user's is not."""
    authorized = _allow_list(tmp_path)
    if os.getuid() == 0:
        os.chown(authorized, 4242, -1)
    else:
        monkeypatch.setattr("os.getuid", lambda: authorized.stat().st_uid + 1)  # as if another user's
    owner = authorized.stat().st_uid
    with pytest.raises(
        KeysError, match=rf"^authorized_keys {authorized} belongs to uid {owner}, not to this"
    ):
        load_allow_list(authorized, need_keys=False)


def test_a_missing_certificate_is_said_to_be_missing(tmp_path: Path) -> None:
    missing = tmp_path / "missing.key_secret"
    with pytest.raises(KeysError) as refused:
        load_certificate(missing, need_secret=True)
    assert str(refused.value) == f"CURVE certificate {str(missing)!r} does not exist"
    with pytest.raises(KeysError, match="is not a file$"):
        load_certificate(tmp_path, need_secret=True)
