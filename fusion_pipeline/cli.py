"""fusion-pipeline: real-time multi-sensor fusion; run it, inspect its streams, record and replay.

Each command group lives in its own module with `register(subparsers)`; a group's heavy imports stay
inside its commands, so that, for example, `echo` never imports torch.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
from pathlib import Path

from fusion_pipeline import __version__
from fusion_pipeline.allocator import tune_allocator
from fusion_pipeline.errors import FusionError

__all__ = ["check_output_path", "config_argument", "main"]

# Modules that add subcommands. Each defines register(subparsers) and sets `func` on its parsers.
COMMAND_MODULES = (
    "fusion_pipeline.introspect",
    "fusion_pipeline.keys",
    "fusion_pipeline.model.commands",
    "fusion_pipeline.run_command",
    "fusion_pipeline.log_commands",
    "fusion_pipeline.status",
)


def config_argument(parser: argparse.ArgumentParser) -> None:
    """The -c/--config option of every command that runs on a pipeline config."""
    parser.add_argument(
        "-c", "--config", type=Path, default=None, help="TOML config (default: the embedded demo)"
    )


def check_output_path(path: Path | None, option: str, *, new: bool = False) -> None:
    """Refuse at start an output file (`option`) that could only fail once the work is done; `new`: one
    that must not exist yet (a log is never written over)."""
    if path is None:
        return
    if not (path.parent.is_dir() and os.access(path.parent, os.W_OK)):
        raise FusionError(f"{option} {path}: directory {path.parent} does not exist or is not writable")
    if new and path.exists():
        raise FusionError(f"{option} {path}: exists already, not overwriting a log")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fusion-pipeline", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    tune_allocator()  # replay and record move megabyte frames (fusion_pipeline.allocator)
    try:
        return int(args.func(args) or 0)
    except FusionError as exc:
        print(f"fusion-pipeline {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `... | head`: the reader left; end quietly as other Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 128 + signal.SIGPIPE


if __name__ == "__main__":
    sys.exit(main())
