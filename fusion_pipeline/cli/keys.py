"""`fusion-pipeline keys generate DIR`: CURVE keypairs for tcp endpoints."""

from __future__ import annotations

import argparse
from pathlib import Path

from fusion_pipeline.cli.args import add_command
from fusion_pipeline.transport.keys import generate_keys, key_name_problem

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    keys = sub.add_parser("keys", help="CURVE key management for tcp endpoints")
    keys_sub = keys.add_subparsers(dest="keys_command", metavar="KEYS_COMMAND", required=True)
    generate = add_command(keys_sub, "generate", _generate)
    generate.add_argument("directory", type=Path, help="where to write the certificates (created 0700)")
    generate.add_argument(
        "--name",
        type=_key_name,
        default="pipeline",
        help="certificate name, a plain file name (default: pipeline)",
    )


def _key_name(text: str) -> str:
    """An argparse type: a name the keypair's two files can take inside DIRECTORY (not a path out of it)."""
    problem = key_name_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(f"{text!r} {problem}; give a plain file name, such as 'vehicle'")
    return text


def _generate(args: argparse.Namespace) -> int:
    """write a keypair: NAME.key (public) and NAME.key_secret"""
    public, secret = generate_keys(args.directory, args.name)
    print(f"public certificate: {public}  (copy it into the peer's authorized_keys directory)")
    print(f"secret certificate: {secret}  (keep it on this host, mode 0600)")
    return 0
