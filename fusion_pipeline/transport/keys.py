"""CURVE keypairs for tcp endpoints: written safely, loaded only when private, allow-lists read by hand."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import zmq.auth
from zmq.utils import z85

from fusion_pipeline.transport.errors import KeysError

__all__ = ["generate_keys", "key_name_problem", "load_allow_list", "load_certificate"]

_GROUP_OTHERS_ANY = 0o077  # group or others may read, write or enter
_GROUP_OTHERS_WRITE = 0o022  # group or others may write
_Z85_KEY_CHARS = 40  # a 32-byte CURVE key in Z85
_Z85_ALPHABET = frozenset(z85.Z85CHARS)


def key_name_problem(name: str) -> str | None:
    """Why `name` cannot name a keypair (NAME.key and NAME.key_secret, files of one directory), or None.
    A dot-name is refused too: `.key` has no suffix to Path, so an allow-list could not take it."""
    if not name:
        return "is empty"
    if os.sep in name or (os.altsep and os.altsep in name):
        return "contains a path separator"
    if name.startswith("."):
        return "starts with a dot"
    if "\0" in name:
        return "contains a NUL character"
    return None


def _exposed_mode(path: Path, subject: str, forbidden: int) -> int | None:
    """The mode of `path` when group or others hold one of its `forbidden` permission bits, else None (the
    caller says what others could do). Refuses a path that a user other than this one or root (who can do
    anything anyway) owns: that user could change its mode or contents."""
    info = path.stat()
    mode = info.st_mode & 0o777
    if mode & forbidden:
        return mode
    if info.st_uid not in (os.getuid(), 0):
        raise KeysError(
            f"{subject} belongs to uid {info.st_uid}, not to this user (uid {os.getuid()}) or root, so "
            f"that user can change it: chown {os.getuid()} {path}"
        )
    return None


def generate_keys(directory: Path, name: str) -> tuple[Path, Path]:
    """Create a keypair; return (public certificate, secret certificate). Refuses a name that is not a plain
    file name, to replace an existing pair (peers trust its public key) and to write a secret where other
    users can reach it."""
    problem = key_name_problem(name)
    if problem:
        raise KeysError(f"keypair name {name!r} {problem}: give a plain file name, such as 'vehicle'")
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise KeysError(f"{directory}: cannot make the key directory: {exc.strerror}") from exc
    mode = _exposed_mode(directory, str(directory), _GROUP_OTHERS_ANY)
    if mode is not None:
        raise KeysError(
            f"{directory}: mode {mode:04o}; a secret key needs a directory only its user can enter "
            "(chmod 700)"
        )
    existing = [p for p in (directory / f"{name}.key", directory / f"{name}.key_secret") if p.exists()]
    if existing:
        raise KeysError(
            f"{existing[0]} exists already; not replacing a keypair its peers may trust (delete it first, "
            "or choose another --name)"
        )
    umask = os.umask(0o077)  # the secret is never readable by others, not even before a chmod
    try:
        public, secret = zmq.auth.create_certificates(directory, name)
    except OSError as exc:
        raise KeysError(f"{directory}: cannot write the keypair {name!r}: {exc.strerror}") from exc
    finally:
        os.umask(umask)
    Path(public).chmod(0o644)  # the public half is meant to be copied around
    return Path(public), Path(secret)


def load_certificate(path: Path, need_secret: bool) -> tuple[bytes, bytes | None]:
    """(public, secret) keys of a certificate file. A file holding a secret key is refused unless only its
    user can access it, whoever loads it: a key others can read is a key others hold."""
    if not path.is_file():  # pyzmq would say "Invalid certificate file" for a missing one
        what = "is not a file" if path.exists() else "does not exist"
        raise KeysError(f"CURVE certificate {str(path)!r} {what}")
    try:
        public, secret = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise KeysError(f"CURVE certificate {str(path)!r} cannot be read: {exc}") from exc
    if need_secret and secret is None:
        raise KeysError(f"CURVE certificate {str(path)!r} has no secret key (use the *.key_secret file)")
    subject = f"CURVE certificate {str(path)!r}"
    # libzmq takes any bytes here and fails later, in a node, as "Invalid argument" naming nothing.
    for line, key in (("public-key", public), ("secret-key", secret)):
        if key is not None and (problem := _key_problem(key)):
            raise KeysError(
                f"{subject}: its {line} {problem}; write the pair anew with `fusion-pipeline keys`"
            )
    if secret is not None and zmq.curve_public(secret) != public:  # a valid Z85 key: libzmq takes it
        raise KeysError(
            f"{subject}: its public-key is not the public half of its secret-key (lines of two keypairs): "
            "peers would hold the one and see the other"
        )
    mode = _exposed_mode(path, subject, _GROUP_OTHERS_ANY) if secret is not None else None
    if mode is not None:
        raise KeysError(
            f"{subject} holds a secret key and has mode {mode:04o}, so other users can read it: chmod 600 "
            f"{path}"
        )
    return public, secret


def _key_problem(key: bytes) -> str | None:
    """Why `key` is not a CURVE key as a certificate file holds it (40 characters of Z85), or None."""
    if len(key) != _Z85_KEY_CHARS:
        return f"is {len(key)} characters long, not {_Z85_KEY_CHARS} (a Z85 CURVE key)"
    if odd := sorted({chr(c) for c in key if c not in _Z85_ALPHABET}):
        return f"holds {''.join(odd)!r}, outside Z85 (a CURVE key's characters)"
    try:
        z85.decode(key)
    except struct.error:  # each 5 characters must encode a number below 2**32
        return "is no Z85 value (a group of its characters stands for more than 32 bits)"
    return None


def _not_a_client_key(path: Path) -> str | None:
    """Why an allow-list entry is not a client's NAME.key file, or None."""
    if path.suffix != ".key":
        return "a name starting with a dot" if path.name.startswith(".") else "not NAME.key"
    problem = key_name_problem(path.stem)
    if problem:
        return f"its name {problem}"
    return None if path.is_file() else "not a file"


def load_allow_list(directory: Path, need_keys: bool) -> frozenset[bytes]:
    """The client public keys (Z85) of an `authorized_keys` directory: one per NAME.key file in it. Refuses
    a directory that is missing, that other users can write (they could add a key), that holds anything
    but NAME.key files (none is skipped unread: a client left out without a word, or a key thought revoked
    by a rename, would be a silent hole), or that names no client where a server will use it (`need_keys`).
    The directory and its files may be readable by all (public keys), writable only by their owner.

    The files are listed here, not by pyzmq's loader: that one globs the directory's own name, so a "*",
    "?" or "[" in it would admit the keys of other directories (and the location "*" admits any key)."""
    if not directory.is_dir():
        what = "is not a directory" if directory.exists() else "does not exist"
        raise KeysError(f"authorized_keys {directory}: {what} (a directory of client *.key files)")
    subject = f"authorized_keys {directory}"
    mode = _exposed_mode(directory, subject, _GROUP_OTHERS_WRITE)
    if mode is not None:
        raise KeysError(
            f"{subject} has mode {mode:04o}, so other users can add a client key to it: chmod go-w "
            f"{directory}"
        )
    try:
        # Passed over: a keypair's own secret half (an allow-list that is the host's keys directory) and
        # the `..data`, `..TIMESTAMP` entries of a Kubernetes Secret or ConfigMap volume, whose NAME.key
        # files link into them.
        entries = sorted(
            path
            for path in directory.iterdir()
            if not path.name.startswith("..") and path.suffix != ".key_secret"
        )
    except OSError as exc:
        raise KeysError(f"{subject}: cannot be listed: {exc.strerror}") from exc
    strays = [f"{path.name!r} ({why})" for path in entries if (why := _not_a_client_key(path))]
    if strays:
        raise KeysError(
            f"{subject}: holds {', '.join(strays)}; only the clients' NAME.key files belong here (move the "
            "others out)"
        )
    for path in entries:
        mode = _exposed_mode(path, f"{subject}: {path.name}", _GROUP_OTHERS_WRITE)
        if mode is not None:
            raise KeysError(
                f"{subject}: {path.name} has mode {mode:04o}, so other users can change it: chmod go-w {path}"
            )
    allowed = frozenset(load_certificate(path, need_secret=False)[0] for path in entries)
    if need_keys and not allowed:
        raise KeysError(
            f"authorized_keys {directory}: holds no public certificate (*.key), so no client could "
            "connect; copy each client's NAME.key into it"
        )
    return allowed
