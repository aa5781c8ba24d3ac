"""`fusion-pipeline status`: ask a running supervisor how its pipeline is."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from fusion_pipeline.cli.args import add_command, config_argument, number
from fusion_pipeline.ops.errors import StatusError
from fusion_pipeline.ops.status import EXIT_DEGRADED, EXIT_HEALTHY, query, resolve_run_dir

__all__ = ["format_status", "register"]


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "status", _status)
    config_argument(p)
    p.add_argument("--run-dir", type=Path, default=None, help="the run directory (default: from the config)")
    p.add_argument("--json", action="store_true", help="print the supervisor's reply as JSON")
    p.add_argument(
        "--timeout",
        type=number(0.0, above=True),
        default=2.0,
        help="seconds to wait for the answer (%(default)s)",
    )


def _status(args: argparse.Namespace) -> int:
    """health of a running pipeline: per node state, pid, uptime, restarts, heartbeat, rates

    Per stream: its rate, how long since its last message, the messages ingest dropped (by reason:
    malformed_*, schema_*, ...) and the gaps in its seq (seq_lost: never arrived, or too damaged to read
    their seq, those also among the dropped), since the run began.
    Ask a running supervisor for the state of its nodes. Exit status: 0 healthy, 1 degraded (a node not
    running, a stream silent, or the results behind the reference), 2 no supervisor answered. Warnings
    (plain tcp, metrics off) are listed without making it degraded.
    """
    if args.config is not None and args.run_dir is not None:  # the run dir alone finds the supervisor
        raise StatusError(f"give -c {args.config} or --run-dir {args.run_dir}, not both")
    run_dir, looked = resolve_run_dir(args.config, args.run_dir)
    report = query(run_dir, args.timeout, looked)
    print(json.dumps(report, indent=2) if args.json else format_status(report))
    return EXIT_DEGRADED if report["degraded"] else EXIT_HEALTHY


def format_status(report: dict[str, Any]) -> str:
    """The human-readable table."""
    health = "DEGRADED: " + "; ".join(report["reasons"]) if report["degraded"] else "healthy"
    # One name column for both tables, as wide as the longest name (surround's nodes have long ones).
    width = max(
        len(name) for name in ("stream", *(row["name"] for row in (*report["nodes"], *report["streams"])))
    )
    lines = [
        f"{report['pipeline']}: {health}",
        f"run dir {report['run_dir']}, up {_duration(report['uptime_s'])}, "
        f"provider {report['provider'] or '-'}, results {report['results']}",
        f"results {report['results_endpoint']}, metrics {report['metrics']}",
        *(f"WARNING: {warning}" for warning in report["warnings"]),
        "",
        f"{'node':<{width}} {'state':<10} {'pid':>7} {'uptime':>8} {'restarts':>8} {'heartbeat':>9} "
        f"{'in/s':>7} {'out/s':>7}",
    ]
    for node in report["nodes"]:
        beat = "-" if node["heartbeat_age_s"] is None else f"{node['heartbeat_age_s']:.1f}s ago"
        uptime = "-" if node["uptime_s"] is None else _duration(node["uptime_s"])
        lines.append(
            f"{node['name']:<{width}} {node['state']:<10} {node['pid'] or '-':>7} {uptime:>8} "
            f"{node['restarts']:>8} {beat:>9} {_rate(node['rates'].get('in')):>7} "
            f"{_rate(node['rates'].get('out')):>7}"
        )
    lines += [
        "",
        f"{'stream':<{width}} {'msg/s':>7} {'config':>7} {'idle':>7} {'lag ms':>7} {'dropped':>7} "
        f"{'lost':>7}  required",
    ]
    for stream in report["streams"]:
        lag = stream.get("lag_ms", {}).get("median")  # a supervisor of an earlier version has none
        lines.append(
            f"{stream['name']:<{width}} {_rate(stream['messages_per_s']):>7} {stream['rate_hz']:>7g} "
            f"{stream['idle_s']:>6.1f}s {_lag(lag):>7} {sum(stream['dropped'].values()):>7} "
            f"{stream['lost']:>7}  "
            f"{'yes' if stream['required'] else 'no':<8}{'  SILENT' if stream['silent'] else ''}".rstrip()
        )
    # Why ingest refused what it did: the reasons say what to fix in the driver or the config.
    lines += [
        f"{stream['name']} dropped: {', '.join(f'{k} {v}' for k, v in stream['dropped'].items())}"
        for stream in report["streams"]
        if stream["dropped"]
    ]
    return "\n".join(lines)


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _lag(value: float | None) -> str:
    """A lag in ms in at most 7 characters: a driver stamping with its time since boot lags decades."""
    return "-" if value is None else f"{value:.1f}" if abs(value) < 1e5 else f"{value:.1e}"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f}s"
    minutes, s = divmod(int(seconds), 60)
    hours, m = divmod(minutes, 60)
    return f"{hours}h{m:02d}m" if hours else f"{m}m{s:02d}s"
