"""CURVE keypairs for tcp endpoints: written safely, loaded only when private, allow-lists read by hand."""

from __future__ import annotations

import os
from pathlib import Path

import zmq.auth

from fusion_pipeline.transport.errors import KeysError

__all__ = ["generate_keys", "load_allow_list", "load_certificate"]


def generate_keys(directory: Path, name: str) -> tuple[Path, Path]:
    """Create a keypair; return (public certificate, secret certificate). Refuses to replace an existing
    pair (peers trust its public key) and to write a secret where other users can reach it."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    mode = directory.stat().st_mode & 0o777
    if mode & 0o077:
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
    finally:
        os.umask(umask)
    Path(public).chmod(0o644)  # the public half is meant to be copied around
    return Path(public), Path(secret)


def load_certificate(path: Path, need_secret: bool) -> tuple[bytes, bytes | None]:
    """(public, secret) keys of a certificate file. A file holding a secret key is refused unless only its
    user can access it, whoever loads it: a key others can read is a key others hold."""
    try:
        public, secret = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise KeysError(f"CURVE certificate {str(path)!r} cannot be read: {exc}") from exc
    if need_secret and secret is None:
        raise KeysError(f"CURVE certificate {str(path)!r} has no secret key (use the *.key_secret file)")
    mode = path.stat().st_mode & 0o777
    if secret is not None and mode & 0o077:
        raise KeysError(
            f"CURVE certificate {str(path)!r} holds a secret key and has mode {mode:04o}, so other users "
            f"can read it: chmod 600 {path}"
        )
    return public, secret


def load_allow_list(directory: Path, need_keys: bool) -> frozenset[bytes]:
    """The client public keys (Z85) of an `authorized_keys` directory: one per *.key file in it. Refuses a
    directory that is missing, or that names no client where a server will use it (`need_keys`).

    The files are listed here, not by pyzmq's loader: that one globs the directory's own name, so a "*",
    "?" or "[" in it would admit the keys of other directories (and the location "*" admits any key)."""
    if not directory.is_dir():
        what = "is not a directory" if directory.exists() else "does not exist"
        raise KeysError(f"authorized_keys {directory}: {what} (a directory of client *.key files)")
    allowed = frozenset(
        load_certificate(path, need_secret=False)[0] for path in directory.iterdir() if path.suffix == ".key"
    )
    if need_keys and not allowed:
        raise KeysError(
            f"authorized_keys {directory}: holds no public certificate (*.key), so no client could "
            "connect; copy each client's NAME.key into it"
        )
    return allowed
