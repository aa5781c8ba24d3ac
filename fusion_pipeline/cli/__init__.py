"""The `fusion-pipeline` command: the entry point, shared argument helpers, one module per command group."""

from __future__ import annotations

from fusion_pipeline.cli.args import Parser, check_output_path, comma_list, config_argument, number
from fusion_pipeline.cli.main import build_parser, main

__all__ = ["Parser", "build_parser", "check_output_path", "comma_list", "config_argument", "main", "number"]
