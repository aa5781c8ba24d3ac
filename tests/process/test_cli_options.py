"""The command line as a user types it: a repeated option however spelt, an empty comma list, a stream
remapped twice and numbers out of range are usage errors (exit 2) naming the option."""

from __future__ import annotations

import pytest


def test_a_repeated_option_is_refused_however_it_is_spelt(run_cli) -> None:
    # An abbreviation and the --opt=value form reach the same action as the full spelling.
    done = run_cli("record", "out.mcap", "--dur", "5", "--duration=10")
    assert done.returncode == 2
    assert "argument --duration: given twice (5.0 and then 10.0); give it once" in done.stderr
    done = run_cli("replay", "x.mcap", "-c", "a.toml", "--config", "b.toml")
    assert done.returncode == 2 and "argument -c/--config: given twice" in done.stderr


def test_a_comma_list_of_nothing_is_a_usage_error(run_cli) -> None:
    done = run_cli("model", "train", "--models", " , ")
    assert done.returncode == 2 and "argument --models: ' , ' names nothing" in done.stderr, done.stderr


def test_a_log_stream_remapped_twice_is_refused(run_cli) -> None:
    done = run_cli("replay", "x.mcap", "--remap", "radar/rear=radar/front", "--remap", "radar/rear=lidar/top")
    assert done.returncode == 2
    twice = "--remap radar/rear=radar/front and radar/rear=lidar/top: log stream 'radar/rear' mapped twice"
    assert twice in done.stderr


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["record", "o.mcap", "--duration", "0"], "argument --duration: 0 is not more than 0"),
        (["record", "o.mcap", "--duration", "-2"], "argument --duration: -2 is not more than 0"),
        (["record", "o.mcap", "--split-duration", "0"], "argument --split-duration: 0 is not more than 0"),
        (["record", "o.mcap", "--split-size", "nan"], "argument --split-size: nan is not a finite number"),
        (["replay", "x.mcap", "--rate", "0"], "argument --rate: 0 is not more than 0"),
        (["replay", "x.mcap", "--start", "-1"], "argument --start: -1 is less than 0"),
        (["run", "--duration", "0"], "argument --duration: 0 is not more than 0"),
        (["import-ros2", "b", "-o", "l", "--map", "/a=a", "--channels", "0"], "argument --channels: 0 is"),
        (["hz", "ipc:///x", "--window", "1"], "argument --window: 1 is less than 2"),
        (["echo", "ipc:///x", "--count", "0"], "argument --count: 0 is less than 1"),
        (["echo", "ipc:///x", "--timeout", "-1"], "argument --timeout: -1 is less than 0.001"),
        (["topics", "ipc:///x", "--duration", "soon"], "argument --duration: 'soon' is not a number"),
    ],
)
def test_numbers_out_of_range_are_usage_errors(args: list[str], complaint: str, run_cli) -> None:
    done = run_cli(*args)
    assert done.returncode == 2 and complaint in done.stderr, done.stderr
