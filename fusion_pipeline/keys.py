"""`fusion-pipeline keys generate DIR`: CURVE keypairs for tcp endpoints."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import zmq.auth

from fusion_pipeline.errors import FusionError

__all__ = ["KeysError", "generate_keys", "register"]


class KeysError(FusionError):
    """A keypair cannot be written safely."""


def register(sub: argparse._SubParsersAction) -> None:
    keys = sub.add_parser("keys", help="CURVE key management for tcp endpoints")
    keys_sub = keys.add_subparsers(dest="keys_command", metavar="KEYS_COMMAND", required=True)
    generate = keys_sub.add_parser("generate", help="write a keypair: NAME.key (public) and NAME.key_secret")
    generate.add_argument("directory", type=Path, help="where to write the certificates (created 0700)")
    generate.add_argument("--name", default="pipeline", help="certificate name (default: pipeline)")
    generate.set_defaults(func=_generate)


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


def _generate(args: argparse.Namespace) -> int:
    public, secret = generate_keys(args.directory, args.name)
    print(f"public certificate: {public}  (copy it into the peer's authorized_keys directory)")
    print(f"secret certificate: {secret}  (keep it on this host, mode 0600)")
    return 0
