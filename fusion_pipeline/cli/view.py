"""`fusion-pipeline view`: the pipeline's sensors and results in Rerun or Foxglove (extra [view])."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fusion_pipeline.cli.args import add_command, check_output_path, config_argument, number, stop_on_signals
from fusion_pipeline.config import Config, load_config
from fusion_pipeline.errors import FusionError
from fusion_pipeline.files import write_new_text
from fusion_pipeline.node import POLL_MS
from fusion_pipeline.transport.sockets import say_handshakes

if TYPE_CHECKING:  # the [view] extra is imported when the command runs
    from fusion_pipeline.transport.sockets import Subscriber
    from fusion_pipeline.view import Views, ViewSettings

__all__ = ["register"]

log = logging.getLogger(__name__)

PORT = number(0, int)
#: The ViewSettings an option sets where given, else the config's [view].
_FROM_CONFIG = ("web_port", "grpc_port", "foxglove_port", "max_hz")


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "view", _view)
    p.add_argument(
        "target",
        nargs="*",
        default=[],
        help="LOG.mcap files (a recording and its --results), an endpoint (ipc:// or tcp://) or a run "
        "directory; none: the running pipeline of the config (as `status` finds it)",
    )
    config_argument(p, help="TOML config: its streams' mounts and endpoints (default: the embedded demo)")
    p.add_argument("--run-dir", type=Path, default=None, help="the running pipeline's run directory")
    p.add_argument("--web", action="store_true", help="serve Rerun's web viewer on 127.0.0.1")
    p.add_argument(
        "--web-port", type=PORT, default=None, help="its HTTP port, 0 = any free (default: [view])"
    )
    p.add_argument(
        "--grpc-port", type=PORT, default=None, help="its data port, 0 = any free (default: [view])"
    )
    p.add_argument("--save", type=Path, default=None, help="write the views to this .rrd file (new)")
    p.add_argument(
        "--foxglove", action="store_true", help="serve a Foxglove WebSocket on 127.0.0.1 (live views)"
    )
    p.add_argument(
        "--foxglove-port", type=PORT, default=None, help="its port, 0 = any free (default: [view])"
    )
    p.add_argument(
        "--duration",
        type=number(0.001),
        default=None,
        help="stop after S seconds (live: of viewing; a log: of serving it; default: Ctrl-C)",
    )
    p.add_argument(
        "--max-hz",
        type=number(0.0),
        default=None,
        help="live: about the most frames per second shown of each camera, lidar and radar, 0 = all "
        "(default: [view] max_hz)",
    )
    p.add_argument("--report-json", type=Path, default=None, help="write what was shown and skipped here")


def _view(args: argparse.Namespace) -> int:
    """show the sensors, the result drawn on each camera, presence and latency in Rerun or Foxglove

    Live (an endpoint, a run directory, or the running pipeline): the viewer drains its own real-time
    subscriptions and shows the newest message of each sensor, so it never slows the pipeline; what it
    skips is counted; a live view that receives nothing says so and exits 1, writing no .rrd. A log:
    every message on the log's capture timeline, to scrub through. --web serves Rerun's web viewer on
    127.0.0.1 and prints its URL; --save writes an .rrd; --foxglove (live only) serves a Foxglove
    WebSocket with export-foxglove's channels; with none of them the native Rerun viewer opens. SIGTERM
    stops it as Ctrl-C does. Rerun's usage analytics are switched off first (`rerun analytics disable`).
    Needs the [view] extra.
    """
    check_output_path(args.save, "--save", new=True)
    check_output_path(args.report_json, "--report-json", new=True)
    config = load_config(args.config)
    settings = _settings(args, config)
    logs = [Path(t) for t in args.target if t.endswith(".mcap") or Path(t).is_file()]
    if logs and len(logs) != len(args.target):
        raise FusionError(f"view: give log files or one endpoint, not both: {args.target}")
    _refuse_unused(args, settings, bool(logs))
    # As Ctrl-C: a log shown part way leaves no .rrd, a live view ends and writes its own.
    stop_on_signals(signal.default_int_handler)
    if logs:
        try:
            report, saved = _view_logs(logs, args.duration, config, settings)
        except KeyboardInterrupt:  # an error says itself; a stop would exit 130 without a word
            if settings.save:
                print(f"view: stopped; {settings.save} was not written", file=sys.stderr)
            raise
    else:
        report, saved = _view_live(args, config, settings)
    if saved is not None:
        print(f"wrote {saved}")
    if args.report_json is not None:
        write_new_text(args.report_json, json.dumps(report, indent=2, sort_keys=True) + "\n")
    return 0 if logs or report.get("received") else 1


def _view_logs(
    logs: list[Path], duration: float | None, config: Config, settings: ViewSettings
) -> tuple[dict[str, Any], Path | None]:
    """Every message of the logs on their timeline, then serve them until stopped (web or native);
    the report (messages shown per stream) and the .rrd written, if any."""
    from fusion_pipeline.view import Views, show_log

    views = Views(config, settings, log_time=True)
    try:
        _announce(views)
        shown, cut_short = show_log(logs, views)
        if not shown:  # an .rrd of nothing would only block a retry under its name, as `record` says
            raise FusionError(f"nothing to show: no message in {', '.join(map(str, logs))}")
    except BaseException:
        views.close(discard=True)  # a bad log or a Ctrl-C part way: no .rrd of part of it
        raise
    print(f"shown {shown.total()} messages of {len(logs)} log(s)", flush=True)
    try:
        if settings.web or settings.native:
            _serve_until_stopped(duration)
    finally:
        saved = views.close()
    return {"shown": dict(shown), "truncated": cut_short}, saved


def _view_live(
    args: argparse.Namespace, config: Config, settings: ViewSettings
) -> tuple[dict[str, Any], Path | None]:
    """The newest messages of a running pipeline until stopped; the report (`LiveView.counters`) and
    the .rrd written, if any: none when nothing was received, which is said."""
    from fusion_pipeline.view import LiveView, summary

    views, sources, where = _live(args, config, settings)
    live = LiveView(sources, views)
    start = time.monotonic()
    try:
        _announce(views)
        end = None if args.duration is None else start + args.duration
        # From here a stop ends the loop between two passes: one interrupting a pass counted a message
        # received that it had not shown yet.
        stopped: list[bool] = []
        stop_on_signals(lambda *_: stopped.append(True))
        while not stopped and (end is None or time.monotonic() < end):
            live.poll(POLL_MS)
        stop_on_signals(signal.default_int_handler)  # a second stop cuts a close that hangs short
    finally:
        for source in sources:
            source.close()
        # As `record`: a view of nothing is no recording, and it would block a retry under its name.
        received = bool(live.counters().get("received"))
        saved = views.close(discard=not received)
    report = live.counters()
    if received:
        print(summary(report), flush=True)
    else:
        # Messages that came and were refused (limits, a bad header) say more than "is it running?".
        malformed = dict(live.malformed())
        failing = say_handshakes({u: p for source in sources for u, p in source.handshake_failing.items()})
        why = (
            f"; malformed, dropped: {malformed}"
            if malformed
            else f"; handshakes failing: {failing}"
            if failing
            else " (is it running?)"
        )
        print(
            f"view: nothing received in {time.monotonic() - start:.1f} s from {where}{why}"
            + ("; no .rrd written" if settings.save else ""),
            file=sys.stderr,
        )
    return report, saved


def _settings(args: argparse.Namespace, config: Config) -> ViewSettings:
    """What to show the views in: the outputs (--save, --web, --foxglove) as the options say, the rest
    (ports, max_hz) as given or else as the config's [view] sets them for its viewer node."""
    from fusion_pipeline.view import ViewSettings

    view = config.view
    if view.enabled or view.save or view.web or view.foxglove:
        log.info(
            "view: [view]'s enabled, save, web and foxglove are the pipeline's viewer node's; "
            "this command shows in what its options say"
        )
    given = {key: getattr(args, key) for key in _FROM_CONFIG if getattr(args, key) is not None}
    return replace(
        ViewSettings.from_config(view), save=args.save, web=args.web, foxglove=args.foxglove, **given
    )


def _refuse_unused(args: argparse.Namespace, settings: ViewSettings, log_target: bool) -> None:
    """An option given where it does nothing is a mistake to say, not a value to drop."""
    unused: list[str] = []
    if not settings.web:
        unused += [f"{o} (only with --web)" for o in ("--web-port", "--grpc-port") if _given(args, o)]
    if not settings.foxglove and _given(args, "--foxglove-port"):
        unused.append("--foxglove-port (only with --foxglove)")
    if log_target:
        if settings.foxglove:
            unused.append(
                "--foxglove (a log's messages would all be sent before a client could connect; "
                "`fusion-pipeline export-foxglove` writes them as an MCAP for Foxglove to open)"
            )
        if _given(args, "--max-hz"):
            unused.append("--max-hz (a log's views show every message)")
        if _given(args, "--run-dir"):
            unused.append("--run-dir (the views come from the log files)")
        if _given(args, "--duration") and not (settings.web or settings.native):
            unused.append("--duration (nothing is served once the log is in --save)")
    elif args.target and _given(args, "--run-dir"):
        unused.append(f"--run-dir ({args.target[0]} names what to view)")
    if unused:
        raise FusionError("view: " + "; ".join(f"{what} does nothing here" for what in unused))


def _given(args: argparse.Namespace, option: str) -> bool:
    return getattr(args, option[2:].replace("-", "_")) is not None


def _live(
    args: argparse.Namespace, config: Config, settings: ViewSettings
) -> tuple[Views, list[Subscriber], str]:
    """The views and the sockets of a live view: one endpoint, or the config's in a run directory; and
    which, in words."""
    from fusion_pipeline.ops.status import STATUS_SOCKET, resolve_run_dir
    from fusion_pipeline.protocol import Endpoint
    from fusion_pipeline.transport.sockets import Subscriber, ipc_served
    from fusion_pipeline.view import Views, open_sources

    if len(args.target) > 1:
        raise FusionError(f"view: one endpoint or run directory at a time, got {args.target}")
    target = args.target[0] if args.target else ""
    endpoint = target if "://" in target else ""
    run_dir = None
    if not endpoint:
        run_dir = Path(target).absolute() if target else resolve_run_dir(args.config, args.run_dir)[0]
        # A running supervisor answers `status` there: without it nothing would ever come.
        status = run_dir / STATUS_SOCKET
        if not ipc_served(Endpoint(f"ipc://{status}")):
            why = (
                "no such directory"
                if not run_dir.exists()
                else f"no {STATUS_SOCKET} in it"
                if not status.exists()
                else f"no supervisor serves its {STATUS_SOCKET}: one that was killed left it"
            )
            raise FusionError(f"view: {run_dir} is not a running pipeline's run directory ({why})")

    def subscriber(urls: list[str], **options: Any) -> Subscriber:
        return Subscriber(urls, curve=config.curve_for(urls), **options)

    sources = open_sources(subscriber, config, run_dir, endpoint)
    where = endpoint or f"the pipeline in {run_dir}"
    try:
        return Views(config, settings), sources, where
    except BaseException:
        for source in sources:
            source.close()
        raise


def _announce(views: Views) -> None:
    for line in views.served():
        print(line, flush=True)


def _serve_until_stopped(duration: float | None) -> None:
    """Keep the servers up for the viewers that connect (a log's views stay in the server)."""
    print(
        "serving; Ctrl-C to stop"
        if duration is None
        else f"serving for {duration:g} s; Ctrl-C stops it sooner",
        flush=True,
    )
    end = None if duration is None else time.monotonic() + duration
    try:
        while end is None or time.monotonic() < end:
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
