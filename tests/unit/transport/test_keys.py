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


def _with_line(source: Path, target: Path, line: str, value: str) -> Path:
    """`source` with its `line` key ("public-key", "secret-key") set to `value`, written to `target` 0600."""
    text = "".join(
        f'    {line} = "{value}"\n' if row.strip().startswith(line) else row
        for row in source.read_text().splitlines(keepends=True)
    )
    target.write_text(text)
    target.chmod(0o600)
    return target


@pytest.mark.parametrize(
    ("line", "value", "problem"),
    [
        ("secret-key", "short", "its secret-key is 5 characters long, not 40 (a Z85 CURVE key)"),
        ("public-key", "short", "its public-key is 5 characters long, not 40 (a Z85 CURVE key)"),
        ("secret-key", "~" * 40, "its secret-key holds '~', outside Z85"),
        ("secret-key", "#" * 40, "its secret-key is no Z85 value"),  # libzmq: ZMQError, a traceback
        ("public-key", "#" * 40, "its public-key is no Z85 value"),
    ],
)
def test_a_certificate_whose_key_is_no_curve_key_is_refused_naming_the_line(
    tmp_path: Path, line: str, value: str, problem: str
) -> None:
    """libzmq took such a key and failed later, in every node, as "ZMQError: Invalid argument"."""
    secret = generate_keys(tmp_path / "keys", "host")[1]
    bad = _with_line(secret, tmp_path / "bad.key_secret", line, value)
    with pytest.raises(KeysError) as refused:
        load_certificate(bad, need_secret=True)
    assert str(refused.value).startswith(f"CURVE certificate {str(bad)!r}: {problem}")


def test_a_certificate_of_two_keypairs_halves_is_refused(tmp_path: Path) -> None:
    """Its holder proved one key and its peers expected the other: "the server's key is not this
    client's server_key" on a right server_key."""
    ours = generate_keys(tmp_path / "keys", "ours")[1]
    theirs = generate_keys(tmp_path / "keys", "theirs")[1]
    their_secret = next(r for r in theirs.read_text().splitlines() if r.strip().startswith("secret-key"))
    mixed = _with_line(ours, tmp_path / "mixed.key_secret", "secret-key", their_secret.split('"')[1])
    with pytest.raises(KeysError, match="its public-key is not the public half of its secret-key"):
        load_certificate(mixed, need_secret=True)
    assert load_certificate(ours, need_secret=True)[1] is not None  # a pair as written is whole


def test_an_allow_list_entry_that_is_no_curve_key_is_refused(tmp_path: Path) -> None:
    """It was accepted and left out without a word: that client could never connect."""
    client = generate_keys(tmp_path / "keys", "client")[0]
    authorized = tmp_path / "authorized"
    authorized.mkdir()
    (authorized / "client.key").write_bytes(client.read_bytes())
    _with_line(client, authorized / "typo.key", "public-key", "short").chmod(0o644)
    with pytest.raises(KeysError, match=r"typo.key': its public-key is 5 characters long"):
        load_allow_list(authorized, need_keys=True)
