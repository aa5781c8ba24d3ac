"""add_command: a subcommand's help and description are its handler's docstring, as click's are."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Iterator

import pytest

from fusion_pipeline.cli.args import STOP_SIGNALS, Parser, add_command, stop_on_signals
from fusion_pipeline.cli.commands import build_parser


def _words(text: str) -> str:
    """`text` with argparse's line wrapping undone."""
    return " ".join(text.split())


def _thing(args: argparse.Namespace) -> int:
    """do the thing,
    in two lines

    What the thing does, which `thing --help` shows
    above the options.
    """
    return 0


def _short(args: argparse.Namespace) -> int:
    """a command with no description"""
    return 0


def _bare(args: argparse.Namespace) -> int:
    return 0


def _tool() -> tuple[Parser, argparse._SubParsersAction]:
    parser = Parser(prog="tool")
    return parser, parser.add_subparsers(dest="command", metavar="COMMAND", required=True)


def test_the_first_paragraph_is_the_help_and_the_rest_the_description() -> None:
    parser, sub = _tool()
    thing = add_command(sub, "thing", _thing)
    assert "thing do the thing, in two lines" in _words(parser.format_help())
    assert "What the thing does, which `thing --help` shows above the options." in _words(thing.format_help())
    assert parser.parse_args(["thing"]).func is _thing


def test_a_one_paragraph_docstring_is_the_help_only_and_a_note_ends_the_description() -> None:
    parser, sub = _tool()
    short = add_command(sub, "short", _short)
    noted = add_command(sub, "noted", _thing, note=" Shared words.")
    assert short.description is None
    assert _words(noted.format_help()).endswith(
        "shows above the options. Shared words. options: -h, --help show this help message and exit"
    )


def test_a_handler_without_a_docstring_is_refused() -> None:
    parser, sub = _tool()
    with pytest.raises(TypeError, match="command 'bare': .*_bare has no docstring"):
        add_command(sub, "bare", _bare)


def _command_lists(parser: argparse.ArgumentParser, words: str = "") -> Iterator[tuple[str, argparse.Action]]:
    """(command words, entry in its parent's command list) of every command and subcommand."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for entry in action._choices_actions:
                yield f"{words} {entry.dest}".strip(), entry
                yield from _command_lists(action.choices[entry.dest], f"{words} {entry.dest}")


def test_every_command_of_the_tool_has_its_help_line() -> None:
    commands = dict(_command_lists(build_parser()))
    assert {"record", "replay", "echo", "keys generate", "model train", "model info"} <= commands.keys()
    assert [words for words, entry in commands.items() if not entry.help] == []


def test_a_ctrl_c_while_the_commands_load_exits_130_without_a_traceback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Loading the command groups takes about half a second; a Ctrl-C then printed the import's
    traceback. (The Ctrl-C is raised by the import itself: a real SIGINT's instant cannot be chosen.)"""
    import importlib.abc

    import fusion_pipeline.cli as cli

    class CtrlC(importlib.abc.MetaPathFinder):
        def find_spec(self, name: str, path: object, target: object = None) -> None:
            if name == "fusion_pipeline.cli.commands":
                raise KeyboardInterrupt

    monkeypatch.delitem(sys.modules, "fusion_pipeline.cli.commands")
    monkeypatch.setattr(sys, "meta_path", [CtrlC(), *sys.meta_path])
    assert cli.main(["run", "--duration", "1"]) == 130


def test_a_stop_signal_the_command_was_started_with_ignored_stays_ignored() -> None:
    """`nohup fusion-pipeline run &`: the run must outlive the ssh session, as nohup asked."""
    saved = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    try:
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        stop_on_signals(signal.default_int_handler)
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGTERM) is signal.default_int_handler
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)
