"""Every option of every subcommand: repeated multi-value options add up, a repeated one-value option is a
usage error naming it (argparse alone keeps the last value silently). The parser alone, in this process;
the command line as a user types it: tests/process/test_cli_options.py."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest

from fusion_pipeline.cli.commands import build_parser

CommandParser = tuple[list[str], argparse.ArgumentParser]


def _leaf_commands(parser: argparse.ArgumentParser, words: tuple[str, ...] = ()) -> Iterator[CommandParser]:
    """(command words, parser) of every subcommand that runs (nested ones: `model train`, ...)."""
    subparsers = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subparsers and words:
        yield list(words), parser
    for action in subparsers:
        for name, child in action.choices.items():
            yield from _leaf_commands(child, (*words, name))


def _value(action: argparse.Action) -> str:
    """A value the option's type accepts (choices, bounded numbers, paths, text)."""
    if action.choices:
        return str(next(iter(action.choices)))
    for text in ("5", "100", "0.5", "x"):
        try:
            if action.type is None or action.type(text) is not None:  # type: ignore[operator]
                return text
        except (argparse.ArgumentTypeError, ValueError):
            continue
    raise AssertionError(f"no test value for {action.option_strings or action.dest}")


def _width(action: argparse.Action) -> int:
    """How many values one use of the option takes."""
    return action.nargs if isinstance(action.nargs, int) else 1


def _splits_commas(action: argparse.Action) -> bool:
    """Whether one value of the option names several things: its type splits `a,b` into a list, or its
    help says it takes a comma-separated list (split later, in the command, where no parser sees it)."""
    if "comma-separated" in " ".join((action.help or "").split()):
        return True
    try:
        return isinstance(action.type("x,y"), list)  # type: ignore[misc]
    except (TypeError, argparse.ArgumentTypeError, ValueError):
        return False


def _one_use(action: argparse.Action) -> list[str]:
    return [action.option_strings[-1], *[_value(action)] * _width(action)] if action.option_strings else []


def _required(parser: argparse.ArgumentParser, leaving_out: argparse.Action) -> list[str]:
    """The positionals and required options of a command, so that it parses."""
    line: list[str] = []
    for action in parser._actions:
        if action is leaving_out:
            continue
        if not action.option_strings:
            line += [_value(action)] * _width(action)
        elif action.required:
            line += _one_use(action)
    return line


def _options() -> Iterator[tuple[list[str], argparse.ArgumentParser, argparse.Action]]:
    for words, parser in _leaf_commands(build_parser()):
        for action in parser._actions:
            if action.option_strings and action.nargs != 0:  # flags take no value: nothing to lose
                yield words, parser, action


OPTIONS = list(_options())


def test_the_walk_sees_every_command_and_the_options_of_issue_12() -> None:
    seen = {(" ".join(words), action.option_strings[-1]) for words, _, action in OPTIONS}
    for expected in [
        ("import-ros2", "--map"),
        ("record", "--streams"),
        ("record", "--duration"),
        ("replay", "--streams"),
        ("replay", "--remap"),
        ("model train", "--samples"),
        ("echo", "--timeout"),
    ]:
        assert expected in seen


@pytest.mark.parametrize(
    ("words", "parser", "action"),
    OPTIONS,
    ids=[f"{' '.join(w)} {a.option_strings[-1]}" for w, _, a in OPTIONS],
)
def test_an_option_given_twice_adds_up_or_is_refused(
    words: list[str], parser: argparse.ArgumentParser, action: argparse.Action, capsys: pytest.CaptureFixture
) -> None:
    line = [*words, *_required(parser, action), *_one_use(action), *_one_use(action)]
    several = action.nargs in ("+", "*") or _width(action) > 1 or _splits_commas(action)
    if several:
        # An option that takes several values must keep every use: `--map A --map B` imports both, and
        # `--models a --models b` trains both as `--models a,b` does.
        assert not isinstance(action, argparse._StoreAction), f"{action.option_strings}: action 'store'"
        values = getattr(build_parser().parse_args(line), action.dest)
        flat = [v for use in values for v in (use if isinstance(use, list) else [use])]
        assert len(flat) == 2 * _width(action), values
    else:
        with pytest.raises(SystemExit) as exit_:
            build_parser().parse_args(line)
        assert exit_.value.code == 2
        named = "/".join(action.option_strings)
        assert f"argument {named}: given twice" in capsys.readouterr().err


def test_repeated_multi_value_options_reach_the_command() -> None:
    args = build_parser().parse_args(
        ["replay", "x.mcap", "--streams", "a", "--streams", "b", "c", "--remap", "a=x", "--remap", "b=y"]
    )
    assert args.streams == ["a", "b", "c"] and args.remap == ["a=x", "b=y"]
    args = build_parser().parse_args(["import-ros2", "bag", "-o", "l.mcap", "--map", "/a=a", "--map", "/b=b"])
    assert args.map == ["/a=a", "/b=b"]
    args = build_parser().parse_args(
        ["model", "train", "--models", "concat,joint", "--models", "camera-only"]
    )
    assert args.models == ["concat", "joint", "camera-only"]
    args = build_parser().parse_args(["model", "train", "--models", " concat, ,joint,"])
    assert args.models == ["concat", "joint"]  # blanks around and between the commas are nothing
    assert build_parser().parse_args(["model", "train"]).models is None  # the whole suite


def test_record_takes_both_split_settings_as_the_record_section_does() -> None:
    """`[record]` took split_size_mb and split_duration_s together (a file at whichever comes first);
    the command refused the two options together."""
    args = build_parser().parse_args(["record", "r.mcap", "--split-size", "5", "--split-duration", "2"])
    assert (args.split_size, args.split_duration) == (5.0, 2.0)


@pytest.mark.parametrize(
    ("option", "value", "refused"),
    [("--split-duration", "1e300", "is more than 604800"), ("--split-size", "1e300", "is more than 65536")],
)
def test_record_splits_past_any_real_setting_are_refused(
    option: str, value: str, refused: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """--split-duration 1e300 passed, then a traceback turning it into ns (the config's keys are bounded)."""
    with pytest.raises(SystemExit):
        build_parser().parse_args(["record", "r.mcap", option, value])
    assert f"argument {option}: {value} {refused}" in capsys.readouterr().err
