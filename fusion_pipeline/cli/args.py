"""Argument helpers every command shares: the parser class, a subcommand whose help is its handler's
docstring, number and list types, -c/--config, the check an output path gets before any work, and the
signals that stop a command."""

from __future__ import annotations

import argparse
import inspect
import math
import os
import signal
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from fusion_pipeline.errors import FusionError

__all__ = [
    "STOP_SIGNALS",
    "BooleanOnce",
    "Parser",
    "add_command",
    "check_output_path",
    "comma_list",
    "config_argument",
    "number",
    "stop_on_signals",
    "verify_crcs_argument",
]

#: What stops a command: Ctrl-C, a service manager's SIGTERM, and SIGHUP, which the terminal or ssh
#: session a command was started from sends as it goes away.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def stop_on_signals(handler: Callable[[int, Any], Any]) -> None:
    """From now on every signal of STOP_SIGNALS runs `handler`: `signal.default_int_handler` to stop as
    Ctrl-C does (KeyboardInterrupt), or one that asks the command's loop to end. A signal the command was
    started with ignored stays ignored (`nohup` ignores SIGHUP, a shell's background job SIGINT)."""
    for signum in STOP_SIGNALS:
        if signal.getsignal(signum) is not signal.SIG_IGN:
            signal.signal(signum, handler)


class _Once(argparse.Action):
    """An action that refuses a second use of its option, however it is spelt: argparse would silently keep
    the last. Only a Parser keeps the record of what was given; `shown` is the new use in the message."""

    def shown(self, values: Any, option_string: str) -> object:
        return values

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        if option_string is not None:  # a positional is consumed once anyway
            given = parser._given  # type: ignore[attr-defined]
            if self in given:
                before, after = getattr(namespace, self.dest), self.shown(values, option_string)
                raise argparse.ArgumentError(self, f"given twice ({before} and then {after}); give it once")
            given.add(self)
        super().__call__(parser, namespace, values, option_string)


class _StoreOnce(_Once, argparse._StoreAction):
    """argparse's 'store', once. An option that takes several values accumulates them instead
    (action="extend")."""


class BooleanOnce(_Once, argparse.BooleanOptionalAction):
    """`--flag/--no-flag` (argparse.BooleanOptionalAction), once: `--flag --no-flag` is refused."""

    def shown(self, values: Any, option_string: str) -> object:
        return option_string


class Parser(argparse.ArgumentParser):
    """The parser of every command (subcommands inherit its class): an option that takes one value is
    refused when given twice, wherever it is added (parser or group) and however it is spelt."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.register("action", None, _StoreOnce)
        self.register("action", "store", _StoreOnce)
        self._given: set[argparse.Action] = set()

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        self._given = set()  # per parse: a subcommand's parser parses its own part of the line
        return super().parse_known_args(args, namespace)


def add_command(
    sub: argparse._SubParsersAction,
    name: str,
    handler: Callable[[argparse.Namespace], int],
    *,
    note: str = "",
) -> argparse.ArgumentParser:
    """Register the subcommand `name`, run by `handler`, whose docstring is its help as in click: the first
    paragraph is the line the command list shows, the rest the description above `name --help`'s options
    (argparse reflows both, so the docstring's line breaks are not shown). `note` ends the description: a
    text several commands share. Returns the command's parser."""
    doc = inspect.getdoc(handler)
    if not doc:
        raise TypeError(f"command {name!r}: {handler.__qualname__} has no docstring, which is its help")
    help, _, description = doc.partition("\n\n")
    parser = sub.add_parser(name, help=help, description=(description + note) or None)
    parser.set_defaults(func=handler)
    return parser


def number(
    low: float, kind: type = float, *, above: bool = False, high: float | None = None
) -> Callable[[str], Any]:
    """An argparse type: a finite number of `kind` that is at least `low` (more than `low` with `above`)
    and at most `high`; a usage error naming the option otherwise."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            what = "an integer" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text} is not a finite number")
        if value < low or (above and value == low):
            raise argparse.ArgumentTypeError(f"{text} is {'not more' if above else 'less'} than {low:g}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"{text} is more than {high:g}")
        return value

    return parse


def comma_list(text: str) -> list[str]:
    """An argparse type for an option that names several things in one value (`--models a,b`): the
    names, blanks dropped. Use it with action="extend", so that `--models a --models b` adds up as
    `--models a,b` does (tests/unit/cli/test_options.py recognises such options by this type's list)."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"{text!r} names nothing")
    return names


def config_argument(
    parser: argparse.ArgumentParser, help: str = "TOML config (default: the embedded demo)"
) -> None:
    """The -c/--config option of every command that reads a pipeline config (`help`: what it is for)."""
    parser.add_argument("-c", "--config", type=Path, default=None, help=help)


def check_output_path(path: Path | None, option: str, *, new: bool = False) -> None:
    """Refuse at start an output file (`option`) that could only fail once the work is done; `new`: one
    that must not exist yet (a log or a model is never written over)."""
    if path is None:
        return
    if not (path.parent.is_dir() and os.access(path.parent, os.W_OK)):
        raise FusionError(f"{option} {path}: directory {path.parent} does not exist or is not writable")
    if new and path.exists():
        raise FusionError(f"{option} {path}: exists already, not overwriting it")
    if path.is_dir():  # a recorder would write beside it under a name of its own (NAME-1, no suffix)
        raise FusionError(f"{option} {path}: a directory; give the file's name")


def verify_crcs_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--verify-crcs",
        action="store_true",
        help="check the log's CRCs too, as the exports do: damage that leaves valid records is refused "
        "as a log cut short (slower: 1.4-1.6 times as long offline, docs/BENCHMARKS.md; a batch does not "
        "read the logs it did before again)",
    )
