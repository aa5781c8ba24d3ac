"""fusion-pipeline: real-time multi-sensor fusion; run it, inspect its streams, record and replay.

Each command group is a module of this package with `register(subparsers)`; a group's heavy imports stay
inside its commands, so that, for example, `echo` never imports torch.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys

from fusion_pipeline import __version__
from fusion_pipeline.allocator import tune_allocator
from fusion_pipeline.cli import batch, introspect, keys, logs, model, run, status, view
from fusion_pipeline.cli.args import STOP_SIGNALS, Parser
from fusion_pipeline.errors import FusionError

__all__ = ["build_parser", "main"]

# The command groups, in the order `--help` lists them.
COMMAND_GROUPS = (introspect, keys, model, run, logs, batch, status, view)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="fusion-pipeline", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for group in COMMAND_GROUPS:
        group.register(sub)
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
    # A command may take the stop signals over for its run (as Ctrl-C, or to stop a supervisor); a
    # caller in the same process (a test, a tool) gets its own handlers back, which processes it forks
    # later inherit (a pool worker that took SIGTERM as Ctrl-C hung its pool's shutdown).
    handlers = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
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
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)


if __name__ == "__main__":
    sys.exit(main())
