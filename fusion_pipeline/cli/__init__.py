"""The `fusion-pipeline` command: the entry point, shared argument helpers, one module per command group."""

from __future__ import annotations

from fusion_pipeline.cli.args import Parser, check_output_path, comma_list, config_argument, number

__all__ = ["Parser", "check_output_path", "comma_list", "config_argument", "main", "number"]


def main(argv: list[str] | None = None) -> int:
    """The `fusion-pipeline` command (cli/commands.py). Loading its command groups takes about half a
    second: a Ctrl-C then ends it as one later does (exit 130), not with a traceback of the imports."""
    try:
        from fusion_pipeline.cli.commands import main as command
    except KeyboardInterrupt:
        return 130
    return command(argv)
