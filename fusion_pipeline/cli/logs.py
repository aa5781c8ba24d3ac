"""`record`, `replay`, `import-ros2`, `export-ros2` and `export-foxglove`: the log commands.

fusion-pipeline record OUT.mcap [-c CONFIG] [--run-dir DIR] [--streams ...] [--duration S]
                       [--split-size MB] [--split-duration S]
fusion-pipeline replay LOG.mcap [-c CONFIG] [--rate R | --max-speed | --offline] [--loop] [--start S]
                       [--end S] [--streams ...] [--remap OLD=NEW] [--results OUT.mcap]
                       [--publish-only --run-dir DIR] [--allow-truncated] [--verify-crcs]
fusion-pipeline import-ros2 BAG -o LOG.mcap --map TOPIC=STREAM[:modality] ... [--sample-rate HZ]
fusion-pipeline export-ros2 LOG.mcap [RESULTS.mcap ...] -o BAG [--storage sqlite3|mcap] [--allow-truncated]
fusion-pipeline export-foxglove LOG.mcap [RESULTS.mcap ...] -o VIEW.mcap [--allow-truncated]

Options that take several values may also be repeated (`--streams a --streams b`); an option that takes
one value is refused when given twice (fusion_pipeline.cli.args.Parser). A command that reads logs reads them
through before it starts and refuses a log cut short (a crash, damage) unless --allow-truncated says to
work on what it holds. The exports verify every CRC; `replay` and `batch` only with --verify-crcs (it
took 1.4-1.6 times as long on a 60 s log offline, docs/BENCHMARKS.md, Offline replay): without it,
damage that leaves valid records (flipped bits in a chunk's data) goes unseen.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import signal
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from fusion_pipeline.cli.args import (
    add_command,
    check_output_path,
    config_argument,
    number,
    stop_on_signals,
    verify_crcs_argument,
)
from fusion_pipeline.config import MAX_MB, MAX_SPLIT_S, Config, load_config
from fusion_pipeline.files import new_file, write_new_text
from fusion_pipeline.logs.errors import LogError
from fusion_pipeline.logs.reader import LogReader, existing_logs, say_cut_short
from fusion_pipeline.logs.send_order import ReplaySettings
from fusion_pipeline.logs.sources import log_sources
from fusion_pipeline.logs.writer import SplitPolicy

__all__ = ["register"]

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    record = add_command(sub, "record", _record)
    record.add_argument("out", type=Path, help="output .mcap (split parts get _000, _001, ...)")
    config_argument(record)
    record.add_argument(
        "--run-dir",
        type=Path,
        default=None,
        help="the running pipeline's run directory (default: found as `status` finds it)",
    )
    record.add_argument(
        "--streams", nargs="+", action="extend", default=[], help="stream names (default: sensors + results)"
    )
    record.add_argument("--duration", type=POSITIVE, default=None, help="stop after S seconds")
    # Both may be given, as [record] takes both: a new file at whichever comes first.
    record.add_argument(
        "--split-size",
        type=number(0, above=True, high=MAX_MB),
        default=None,
        metavar="MB",
        help="new file once this one passed MB (by up to a chunk, 4 MiB before compression)",
    )
    record.add_argument(
        "--split-duration",
        type=number(0, above=True, high=MAX_SPLIT_S),
        default=None,
        metavar="S",
        help="new file every S s of log time",
    )
    record.add_argument("--report-json", type=Path, default=None, help="also write the report here")

    replay = add_command(sub, "replay", _replay)
    replay.add_argument("logs", type=Path, nargs="+", help="log file(s); split parts in order")
    config_argument(replay)
    pace = replay.add_mutually_exclusive_group()
    pace.add_argument("--rate", type=POSITIVE, default=None, help="speed factor, original timing (default 1)")
    pace.add_argument("--max-speed", action="store_true", help="as fast as possible, nothing skipped")
    replay.add_argument(
        "--offline",
        action="store_true",
        help="run the stages in this process, no sockets: as fast as the CPU goes, the results of "
        "--max-speed (takes --start, --end, --streams, --remap, --results, --report-json, "
        "--allow-truncated, --verify-crcs)",
    )
    replay.add_argument("--loop", action="store_true", help="start over at the end, until Ctrl-C")
    replay.add_argument("--start", type=number(0), default=0.0, help="skip the first S seconds of the log")
    replay.add_argument("--end", type=number(0), default=None, help="stop S seconds into the log")
    replay.add_argument(
        "--streams", nargs="+", action="extend", default=[], help="replay only these log streams"
    )
    replay.add_argument(
        "--remap",
        nargs="+",
        action="extend",
        default=[],
        metavar="OLD=NEW",
        help="publish log stream OLD as NEW",
    )
    replay.add_argument(
        "--results", type=Path, default=None, help="write the pipeline's results to this MCAP"
    )
    replay.add_argument(
        "--publish-only",
        action="store_true",
        help="do not start the graph; publish to a graph already running in --run-dir",
    )
    replay.add_argument("--run-dir", type=Path, default=None, help="with --publish-only: the graph's run dir")
    replay.add_argument("--report-json", type=Path, default=None, help="also write the report here")
    replay.add_argument("--no-progress", action="store_true", help="no progress bar")
    _allow_truncated_argument(replay)
    verify_crcs_argument(replay)

    imp = add_command(sub, "import-ros2", _import_ros2)
    imp.add_argument("bag", type=Path, help="rosbag2 directory (or its .db3/.mcap file)")
    imp.add_argument("-o", "--out", type=Path, required=True, help="output log .mcap")
    imp.add_argument(
        "--map",
        nargs="+",
        action="extend",
        required=True,
        metavar="TOPIC=STREAM[:modality]",
        help="topics to import and their streams",
    )
    imp.add_argument(
        "--sample-rate",
        type=number(1, int),
        default=None,
        help="audio topics: samples per second (default: the bag's AudioInfo; needed without one)",
    )
    imp.add_argument(
        "--channels",
        type=number(1, int),
        default=None,
        help="audio topics: interleaved channels (default: the bag's AudioInfo, else 1)",
    )

    exp = add_command(sub, "export-ros2", _export_ros2)
    exp.add_argument("logs", type=Path, nargs="+", help="log(s), e.g. a recording and its --results file")
    exp.add_argument("-o", "--out", type=Path, required=True, help="bag directory to create")
    exp.add_argument(
        "--storage", choices=("sqlite3", "mcap"), default="sqlite3", help="rosbag2 storage (default: sqlite3)"
    )
    _allow_truncated_argument(exp)

    fox = add_command(sub, "export-foxglove", _export_foxglove)
    fox.add_argument("logs", type=Path, nargs="+", help="log(s), e.g. a recording and its --results file")
    fox.add_argument("-o", "--out", type=Path, required=True, help="output .mcap")
    _allow_truncated_argument(fox)


POSITIVE = number(0, above=True)


def _allow_truncated_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--allow-truncated",
        action="store_true",
        help="work on what a log cut short (a crash, damage) holds instead of refusing it",
    )


def _read_through(
    reader: LogReader, streams: Iterable[str] | None, allow_truncated: bool, say: bool = True
) -> float:
    """Read the logs (only `streams` when given) through once before any work starts, so that a log cut
    short is refused up front (unless allowed) instead of ending the work early with exit 0; one allowed
    is said when `say` (an export says it itself). Returns the seconds from the first message to the last
    (0 with none)."""
    first = last = None
    for message in reader.messages(streams):
        first = message.log_time_ns if first is None else first
        last = message.log_time_ns
    if reader.truncated and not allow_truncated:
        raise LogError(
            "log cut short: "
            + "; ".join(reader.truncated)
            + "; --allow-truncated works on the messages before the damage"
        )
    if say:
        say_cut_short(reader.truncated, "working on the messages before it (--allow-truncated)")
    return 0.0 if first is None or last is None else (last - first) / 1e9


def _check_window(start_s: float, end_s: float | None, span_s: float) -> None:
    """Refuse a --start/--end window that can hold no message of a log spanning `span_s` seconds."""
    span = f"the replayed streams of the log span 0 to {span_s:.3f} s"
    if end_s is not None and start_s > end_s:
        raise LogError(f"--start {start_s:g} is after --end {end_s:g} ({span})")
    if start_s > span_s:
        raise LogError(f"--start {start_s:g} is beyond the log's end ({span})")


def _write_report(path: Path | None, report: dict[str, Any]) -> None:
    """--report-json, when given: linked into place once written, so never over a file nor half written."""
    if path is not None:
        write_new_text(path, json.dumps(report, indent=2) + "\n", LogError)


class _Console(io.TextIOBase):
    """The replay graph's log lines, printed above the progress bar instead of through it."""

    def write(self, text: str) -> int:
        from tqdm import tqdm

        for line in text.splitlines():
            if line.strip():
                tqdm.write(line, file=sys.stderr)
        return len(text)

    def isatty(self) -> bool:
        return False  # the supervisor then prints plain status lines, not one refreshed in place


def _stop_on_signals(stopped: list[bool]) -> None:
    """From now on, Ctrl-C, SIGTERM and SIGHUP set stopped[0]: the command ends its loop and closes its
    files."""

    def handler(signum: int, frame: object) -> None:
        stopped[0] = True

    stop_on_signals(handler)


def _record(args: argparse.Namespace) -> int:
    """record streams of a running pipeline to MCAP, losslessly

    Subscribe to the config's sensor endpoints (and results) and write every message to an MCAP log;
    report what could not be written. Stop with Ctrl-C or --duration.
    """
    from fusion_pipeline.logs.recorder import Recorder, RecordSettings, existing_output
    from fusion_pipeline.ops.status import resolve_run_dir
    from fusion_pipeline.transport.sockets import say_handshakes

    check_output_path(args.out, "OUT")
    check_output_path(args.report_json, "--report-json", new=True)
    config = load_config(args.config)
    settings = RecordSettings(
        path=args.out,
        streams=tuple(args.streams),
        duration_s=args.duration,
        split=SplitPolicy(
            max_bytes=None if args.split_size is None else int(args.split_size * 1024 * 1024),
            max_duration_ns=None if args.split_duration is None else int(args.split_duration * 1e9),
        ),
    )
    if (taken := existing_output(args.out, settings.split)) is not None:
        # Said now, not when a later part of the recording finds it: that part would be lost.
        raise LogError(f"OUT {args.out}: {taken} exists already, not overwriting a log")
    run_dir, looked = resolve_run_dir(args.config, args.run_dir)
    recorder = Recorder(config, run_dir, settings)
    stopped = [False]
    _stop_on_signals(stopped)
    try:
        recorder.run(lambda: stopped[0])
    finally:
        report = recorder.close()
        if report.empty:
            # An empty log is no recording, and it would block a retry under the same name (logs are
            # never written over): it goes, whether the recording ended or failed.
            for path in report.paths:
                path.unlink(missing_ok=True)
            report.paths = []  # nor does its --report-json name it
    _write_report(args.report_json, report.as_json())
    if report.empty:
        failing = say_handshakes(report.handshake_failing)
        why = f"handshakes failing: {failing}" if failing else "is it running?"
        print(
            f"record: nothing received in {report.wall_s:.1f} s from the pipeline in {run_dir} "
            f"({looked}; {why}); no log written",
            file=sys.stderr,
        )
        return 1
    print(report.summary(), file=sys.stderr)
    return 1 if report.not_written or report.error or report.silent else 0


def _describe(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {n}" for name, n in sorted(counts.items())) or "nothing"


def _parse_remap(pairs: list[str]) -> dict[str, str]:
    remap: dict[str, str] = {}
    for pair in pairs:
        old, sep, new = pair.partition("=")
        if not sep or not old or not new:
            raise LogError(f"--remap {pair!r}: expected OLD=NEW")
        if remap.get(old, new) != new:
            raise LogError(f"--remap {old}={remap[old]} and {pair}: log stream {old!r} mapped twice")
        remap[old] = new
    return remap


#: What --offline cannot do, by option: it starts no graph, publishes nothing and reads the log once, as
#: fast as the stages go.
_NOT_OFFLINE = {
    "--rate": "it runs as fast as the stages go (--max-speed is implied)",
    "--loop": "it reads the log once",
    "--publish-only": "it publishes nothing",
    "--run-dir": "it starts no graph and opens no socket",
}


def _replay(args: argparse.Namespace) -> int:
    """run the pipeline on a recorded log instead of the sensors

    Start the graph without its sensor drivers (every node with --replay: lossless, the synchronizer in
    event time and in log order) and publish the log on the drivers' endpoints: at the original timing
    scaled by --rate, or as fast as the graph goes with --max-speed (back-pressure: nothing is skipped,
    and the results are the same at any speed). With --offline, the same stages run in this process
    instead, with no sockets and no graph: the same sets and results, as fast as the CPU goes.
    """
    if args.offline:
        given = [
            option
            for option, value in (
                ("--rate", args.rate),
                ("--loop", args.loop),
                ("--publish-only", args.publish_only),
                ("--run-dir", args.run_dir),
            )
            if value not in (None, False)
        ]
        if given:
            raise LogError(
                "--offline runs the stages in this process; "
                + "; ".join(f"{option} does not go with it: {_NOT_OFFLINE[option]}" for option in given)
            )
    elif args.run_dir is not None and not args.publish_only:
        raise LogError(
            f"--run-dir {args.run_dir} goes with --publish-only; without it, replay starts a graph of its "
            "own in a run dir of its own"
        )
    # A looped replay ends only when stopped, and a stopped replay writes neither of these.
    unwritable = _replay_outputs(args)
    if args.loop and unwritable:
        raise LogError(
            f"--loop does not go with {' and '.join(unwritable)}: a looped replay ends only at Ctrl-C, "
            "and a stopped replay writes no --results or --report-json"
        )
    check_output_path(args.report_json, "--report-json", new=True)
    check_output_path(args.results, "--results", new=True)
    # The results take their name only once the replay went through the log: a failed or stopped one
    # leaves no file under it (a replay can be run again), nor one that blocks the retry.
    # So does its --report-json: the figures of part of a log would pass for the whole log's.
    with contextlib.nullcontext() if args.results is None else new_file(args.results, LogError) as results:
        stopped = [False]  # set once the replay runs (_stop_on_signals): the checks before stop at Ctrl-C
        try:
            report = _replay_to(args, results, stopped)
        except KeyboardInterrupt:  # Ctrl-C before the replay ran (its checks, the model's load): said too
            stopped[0] = True
        if stopped[0]:
            unwritten = _replay_outputs(args)
            said = f": {' and '.join(unwritten)} not written" if unwritten else ""
            print(f"fusion-pipeline replay: stopped before the end of the log{said}", file=sys.stderr)
            raise KeyboardInterrupt  # a stop, as Ctrl-C anywhere else (exit 130); the results are not kept
    _write_report(args.report_json, report)
    return 0


def _replay_outputs(args: argparse.Namespace) -> list[str]:
    """The files a replay was asked to write, as "--option PATH": written only when it reads to the end."""
    outputs = (("--results", args.results), ("--report-json", args.report_json))
    return [f"{option} {path}" for option, path in outputs if path is not None]


def _replay_to(args: argparse.Namespace, results: Path | None, stopped: list[bool]) -> dict[str, Any]:
    """`replay`, its options checked, with the results written to `results`; its report."""
    from fusion_pipeline.cli.run import format_summary
    from fusion_pipeline.logs.replayer import Replayer
    from fusion_pipeline.logs.send_order import absent_streams, left_out_streams, plan_streams
    from fusion_pipeline.ops.status import resolve_run_dir

    config = load_config(args.config)
    settings = ReplaySettings(
        rate=None if args.max_speed or args.offline else args.rate or 1.0,
        loop=args.loop,
        start_s=args.start,
        end_s=args.end,
        streams=tuple(args.streams),
        remap=_parse_remap(args.remap),
        graph=not args.publish_only,
        results_path=results,
        progress=not args.no_progress,
    )
    # The parts of a split recording in part order, whatever order they were given in (a gap is warned).
    sources = log_sources(args.logs, joined=True)
    parts = [path for _, paths in sources.logs for path in paths]
    reader = LogReader(parts, verify_crcs=args.verify_crcs)  # fast unless asked (module docstring)
    # Everything the log and the options decide is checked before a node starts.
    logged = reader.scan_streams()
    plan = plan_streams(config, logged, settings)
    if not args.offline:  # the offline graph says these itself (and reports them)
        left_out_streams(config, logged, plan, settings)
        absent_streams(config, logged, settings)
    _check_window(settings.start_s, settings.end_s, _read_through(reader, plan, args.allow_truncated))
    missing = sources.parts_not_given  # warned of by log_sources; the report says them too
    if args.offline:
        return {
            **_replay_offline(args, config, settings, reader, results, stopped),
            "parts_not_given": missing,
        }
    _stop_on_signals(stopped)
    graph = None
    if args.publish_only:
        run_dir, _ = resolve_run_dir(args.config, args.run_dir)
    else:
        from fusion_pipeline.cli.run import preflight
        from fusion_pipeline.ops.replay_graph import REPLAY_GRAPH, SupervisorThread
        from fusion_pipeline.ops.supervisor import Supervisor

        preflight(config, args.config, graph="replay")
        supervisor = Supervisor(config, args.config, graph=REPLAY_GRAPH, out=_Console())
        run_dir = supervisor.run_dir
        graph = SupervisorThread(supervisor)
    summary: dict = {}
    replayer = None
    try:
        replayer = Replayer(config, run_dir, reader, settings)
        if graph is not None:
            graph.ready()
        report = replayer.run(lambda: stopped[0])
    finally:
        # Stop the graph first: its ingest nodes unsubscribe, which a lossless publisher waits for.
        if graph is not None:
            summary = graph.finish()
        if replayer is not None:
            replayer.close()
    if summary:
        print(format_summary(summary), file=sys.stderr)
    print(report.summary(), file=sys.stderr)
    for problem in reader.truncated:
        print(f"  log cut short: {problem}", file=sys.stderr)
    sync = graph.supervisor.counters.totals("synchronizer") if graph is not None else {}
    inference = graph.supervisor.counters.totals("inference") if graph is not None else {}
    # Sets made that neither gave a result nor were refused by the model: the replay ended before them.
    unanswered = max(0, sync.get("sets_published", 0) - inference.get("bad_sets", 0) - report.results)
    if graph is not None and unanswered and not stopped[0]:  # a stopped replay says so, and no more
        log.warning(
            "WARNING: %d of the %d sets the synchronizer made gave no result before the replay ended "
            "(none came for the last %g s of the wait: a model that slow, or a set lost)",
            unanswered,
            sync.get("sets_published", 0),
            settings.results_timeout_s,
        )
    return {
        "sent": report.sent,
        "results": report.results,
        "wall_s": report.wall_s,
        "log_s": report.log_s,
        "speedup": report.speedup,
        "timing_error_ms": report.timing_error_ms(),
        # Send indices the synchronizer gave up waiting for (fusion_pipeline.sync.reorder): 0 lossless.
        "replay_gaps": sync.get("replay_gaps"),
        "replay_skipped": sync.get("replay_skipped"),  # messages ingest refused, their places passed over
        "truncated": reader.truncated,
        "parts_not_given": missing,
        "replay_held_max": sync.get("replay_held_max"),
        "inference_skipped": summary.get("inference_skipped"),
        "unanswered_sets": unanswered if graph is not None else None,
        "drops": summary.get("drops"),
    }


def _replay_offline(
    args: argparse.Namespace,
    config: Config,
    settings: ReplaySettings,
    reader: LogReader,
    results: Path | None,
    stopped: list[bool],
) -> dict[str, Any]:
    """`replay --offline`, its options checked: the stages in this process (fusion_pipeline.offline);
    its report."""
    from fusion_pipeline.cli.run import preflight
    from fusion_pipeline.offline.graph import OfflineGraph

    preflight(config, args.config, graph="offline")
    graph = OfflineGraph(config)
    if graph.runtime.fell_back:  # said as the inference node says it
        log.warning("WARNING: %s", graph.runtime.describe())
    else:
        log.info("%s", graph.runtime.describe())
    _stop_on_signals(stopped)
    report = graph.run(
        reader,
        results,
        start_s=settings.start_s,
        end_s=settings.end_s,
        streams=settings.streams,
        remap=settings.remap,
        progress=settings.progress,
        stop=lambda: stopped[0],
    )
    print(report.summary(), file=sys.stderr)
    return report.as_json()


@contextlib.contextmanager
def _stop_said(args: argparse.Namespace) -> Iterator[None]:
    """A conversion stopped midway (Ctrl-C, SIGTERM) says so: its partial output is gone (files.new_file),
    and the exit status alone (130) does not tell that -o was not written."""
    try:
        yield
    except KeyboardInterrupt:
        print(f"fusion-pipeline {args.command}: stopped; nothing written to {args.out}", file=sys.stderr)
        raise


def _import_ros2(args: argparse.Namespace) -> int:
    """convert a ROS 2 bag (sqlite3 or mcap storage) into a log (extra [ros])

    Image (rgb8, bgr8, mono8), CompressedImage (jpeg), PointCloud2 (x, y, z [, intensity], any numeric
    field type, read as float32; radar: x, y, z, velocity, rcs, as a cloud with velocity and rcs is
    unless mapped :lidar),
    audio_common_msgs AudioData[Stamped] (S16LE as int16, F32LE as float32; sample rate, channels and
    format from the bag's AudioInfo on TOPIC_info, else --sample-rate, --channels and S16LE),
    sensor_msgs Imu (a generic stream: linear acceleration and angular velocity as 6 float32) and
    std_msgs String results as export-ros2 writes them (JSON, back as results with their seq).
    """
    from fusion_pipeline.logs.ros2 import import_ros2, parse_map, require_rosbags

    require_rosbags()  # the extra missing is said before anything else
    check_output_path(args.out, "-o", new=True)  # before the bag is opened, in every command's words
    stop_on_signals(signal.default_int_handler)  # as Ctrl-C: the partial log goes
    with _stop_said(args):
        counts = import_ros2(
            args.bag, args.out, parse_map(args.map), sample_rate=args.sample_rate, channels=args.channels
        )
    print(f"{args.out}: {_describe(counts)}", file=sys.stderr)
    return 0


def _export_ros2(args: argparse.Namespace) -> int:
    """write logs (and results) as a ROS 2 bag (extra [ros])

    Camera as Image (rgb8) or CompressedImage, lidar and radar as PointCloud2, audio as AudioDataStamped
    with its AudioInfo, a generic stream of 6 values (an IMU) as Imu, results as std_msgs String (JSON);
    sets and other generic streams have no ROS 2 type and are said as not exported.
    """
    from fusion_pipeline.logs.ros2 import export_ros2, require_rosbags

    require_rosbags()  # the extra missing is said before anything else
    return _export(args, lambda logs, out: export_ros2(logs, out, storage=args.storage))


def _export_foxglove(args: argparse.Namespace) -> int:
    """write logs (and results) as an MCAP that Foxglove displays

    Camera as foxglove.RawImage/CompressedImage, lidar and radar as foxglove.PointCloud, results as JSON;
    audio and sets are skipped.
    """
    from fusion_pipeline.logs.foxglove import export_foxglove

    return _export(args, export_foxglove)


def _export(args: argparse.Namespace, write: Callable[[list[Path], Path], dict[str, int]]) -> int:
    """An export command: refuse its -o and a log cut short before `write` converts anything."""
    stop_on_signals(signal.default_int_handler)  # as Ctrl-C: the partial output goes
    check_output_path(args.out, "-o", new=True)
    existing_logs(args.logs)  # a log given twice, refused before any is read through
    held = 0
    for path in args.logs:  # each file on its own (`write` groups them, and says where parts are missing)
        reader = LogReader([path])
        _read_through(reader, None, args.allow_truncated, say=False)
        held += sum(f.messages for f in reader.files)
    if not held:  # an empty output would only block a retry under its name
        raise LogError(f"nothing to export: no message in {', '.join(map(str, args.logs))}")
    with _stop_said(args):
        counts = write(args.logs, args.out)
    print(f"{args.out}: {_describe(counts)}", file=sys.stderr)
    return 0
