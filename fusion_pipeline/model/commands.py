"""`fusion-pipeline model ...` subcommands (filled in by the fused-model work)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    model = sub.add_parser("model", help="train, evaluate, export and inspect the fused model")
    model.add_subparsers(dest="model_command", metavar="MODEL_COMMAND", required=True)
