"""`batch`: many logs through the offline graph, on a local pool of processes or on Ray.

fusion-pipeline batch LOG_OR_DIR... --out DIR [-c CONFIG] [--workers N] [--ray [ADDRESS]]
                      [--compare OTHER_DIR] [--no-progress]
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from fusion_pipeline.cli.args import (
    add_command,
    config_argument,
    number,
    stop_on_signals,
    verify_crcs_argument,
)
from fusion_pipeline.config import load_config

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    batch = add_command(sub, "batch", _batch)
    batch.add_argument(
        "logs",
        type=Path,
        nargs="+",
        metavar="LOG_OR_DIR",
        help="logs, or directories of logs (every *.mcap; split parts NAME_000.mcap, ... are one log)",
    )
    batch.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="DIR",
        help="where NAME.results.mcap, manifest.jsonl and summary.json go (created if missing)",
    )
    config_argument(batch)
    batch.add_argument(
        "--workers",
        type=number(1, int),
        default=None,
        help="processes of the local pool, or CPUs of the local Ray (default: this machine's CPUs)",
    )
    batch.add_argument(
        "--ray",
        nargs="?",
        const="",
        default=None,
        type=_ray_address,
        metavar="ADDRESS",
        help="one Ray task per log (extra [cluster]): on the cluster at ADDRESS (e.g. auto, "
        "ray://head:10001), or on a Ray started for the batch when no address is given",
    )
    batch.add_argument(
        "--compare",
        type=Path,
        default=None,
        metavar="OTHER_DIR",
        help="compare the results with another batch's in OTHER_DIR, log by log, matched by stamp",
    )
    verify_crcs_argument(batch)
    batch.add_argument("--no-progress", action="store_true", help="no progress bar")


def _ray_address(text: str) -> str:
    """--ray's value: a cluster address, not a log that only follows --ray on the command line."""
    if text and (text.endswith(".mcap") or Path(text).is_dir()):  # "": --ray alone
        raise argparse.ArgumentTypeError(
            f"{text!r} is a log, not a Ray address: put the logs before --ray, or write --ray=ADDRESS"
        )
    return text


def _batch(args: argparse.Namespace) -> int:
    """replay many logs offline into a directory, on a local pool or on Ray

    One task per log (split parts are one log): each replays its log through the stages in one process
    (`replay --offline`) and writes DIR/NAME.results.mcap. DIR/manifest.jsonl gets a line per finished
    log (done or failed, its counts, timings and error), so a rerun skips the logs that are done and
    retries the failed ones; a bad log never stops the batch. At the end a summary per log and for the
    batch (sets, results, presence patterns, output statistics; with --compare, the agreement with
    another batch's results) is printed and written to DIR/summary.json. Exit code 1 when a log failed.
    On a Ray cluster, every node must see the logs and DIR at the same paths (docs/OPERATIONS.md).
    """
    from tqdm.contrib.logging import logging_redirect_tqdm

    from fusion_pipeline.cli.run import preflight
    from fusion_pipeline.offline.batch import run_batch
    from fusion_pipeline.offline.manifest import MANIFEST_NAME
    from fusion_pipeline.offline.summary import format_summary

    # SIGTERM stops the batch as Ctrl-C does: through the pool's and Ray's shutdown, not around it (a
    # local Ray's processes outlive a batch that SIGTERM ends at once).
    stop_on_signals(signal.default_int_handler)
    config = load_config(args.config)
    preflight(config, args.config, graph="offline")  # what the workers would refuse, refused once here
    with logging_redirect_tqdm():  # log lines above the progress bar, not through it
        try:
            summary = run_batch(
                args.logs,
                args.out,
                config,
                workers=args.workers,
                ray=args.ray,
                compare=args.compare,
                progress=not args.no_progress,
                verify_crcs=args.verify_crcs,
            )
        except KeyboardInterrupt:
            manifest = args.out / MANIFEST_NAME
            done = (
                f"the logs done so far are in {manifest}, and the same command again runs the rest"
                if manifest.exists()  # a batch stopped before its first line leaves none (run_batch)
                else "no log had finished, nothing written"
            )
            print(f"fusion-pipeline batch: stopped; {done}", file=sys.stderr)
            raise
    print(format_summary(summary, str(args.out)), file=sys.stderr)
    # A log named here that failed, or that --compare could not compare, is work asked for and not done.
    return 1 if summary["run"]["failed"] or summary["run"]["not_compared"] else 0
