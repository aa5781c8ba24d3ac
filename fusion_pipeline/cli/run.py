"""`fusion-pipeline run [-c CONFIG] [--duration S] [--summary-json PATH]`: the live pipeline.

Checks everything that can be checked before a process starts (config, simulated-driver settings, the
set layout, the model file and its contract against the streams), then hands over to the Supervisor.
With no -c it runs the embedded demo: simulated sensors and the shipped model, from any directory.
"""

from __future__ import annotations

import argparse
import json
import logging
import socket
import sys
import tempfile
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fusion_pipeline.cli.args import add_command, check_output_path, config_argument, number, stop_on_signals
from fusion_pipeline.config import (
    CONTINUOUS_MODALITIES,
    DEMO_CONFIG,
    SHIPPED,
    Config,
    GraphKind,
    ViewConfig,
    config_source,
    doubtful_settings,
    invalid_config,
    load_config,
    read_config_text,
)
from fusion_pipeline.errors import ConfigError, FusionError
from fusion_pipeline.files import not_a_file, write_new_text

if TYPE_CHECKING:
    from fusion_pipeline.binding import Bindings

__all__ = ["SERVICE_UNIT", "format_summary", "preflight", "register"]

#: The systemd unit shipped beside the configs (`fusion-pipeline config unit`).
SERVICE_UNIT = "fusion-pipeline.service"

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    config = sub.add_parser("config", help="check a config as `run` would, or print a shipped file")
    cmds = config.add_subparsers(dest="config_command", metavar="CONFIG_COMMAND", required=True)
    check = add_command(cmds, "check", _config_check)
    config_argument(check)
    check.add_argument(
        "--drivers-only",
        action="store_true",
        help="check it for a host that runs only its simulated drivers (`python -m "
        "fusion_pipeline.nodes.sensor_sim`), the rest of the graph elsewhere: that host's own key need not "
        "be in its allow-list",
    )
    config_argument(add_command(cmds, "show", _config_show))
    add_command(cmds, "unit", _config_unit)
    p = add_command(sub, "run", _run)
    config_argument(p)
    p.add_argument(
        "--duration",
        type=number(0, above=True),
        default=None,
        help="stop after S seconds from the start, the nodes' start-up (a few seconds) included "
        "(default: run until Ctrl-C)",
    )
    p.add_argument("--summary-json", type=Path, default=None, help="also write the final summary here")
    p.add_argument(
        "--warmup",
        type=number(0),
        default=2.0,
        help="leave results captured in the first S seconds after every node is up out of the latency "
        "figures and the result ratio (%(default)s)",
    )


def preflight(config: Config, path: Path | None, *, graph: GraphKind = "live") -> None:
    """Refuse, before starting anything, a config the nodes would refuse one by one: a ConfigError that
    starts with the config's file `path` (None: the embedded demo). `graph` is what will run it: "live"
    (`run`: its recorder and viewer too), "replay" (the process graph of `replay`, with neither) or
    "offline" (`replay --offline`, `batch`, which also logs the live-only settings it runs without)."""
    from fusion_pipeline.config import shipped_list
    from fusion_pipeline.inference import load_bindings, model_path
    from fusion_pipeline.ingest import limit_problems
    from fusion_pipeline.sim.drivers import SimSettings

    problems = []  # of every stream at once, as the config's own checks say them
    for stream in config.streams:
        if stream.driver == "sim" or stream.sim:  # an external stream's mount is the viewer's
            try:
                SimSettings.from_stream(stream)
            except FusionError as exc:
                problems.append(str(exc))
        problems += limit_problems(stream)
    if all(s.modality in CONTINUOUS_MODALITIES for s in config.streams):  # a recorder's config may be so
        problems.append(
            "streams: no camera, lidar or radar stream: the synchronizer builds its sets on such discrete "
            "messages (audio and generic samples are taken into them)"
        )
    if problems:
        raise invalid_config(config_source(path), problems)
    try:
        # Outputs a node would only fail to create, in its restarts (an existing file is kept: NAME-1...);
        # only a live run has the recorder and the viewer.
        if graph == "live" and config.view.enabled and config.view.save:
            check_output_path(Path(config.view.save), "view.save")
        if graph == "live" and config.record.enabled:
            check_output_path(Path(config.record.path), "record.path")
        model = model_path(config)
        if problem := not_a_file(model, "model file"):
            raise ConfigError(
                f"model.path: {model.absolute()}: {problem} (a relative path is read from the working "
                f"directory; shipped models: {shipped_list('models')})"
            )
        bindings = load_bindings(config)
    except FusionError as exc:  # the model and its bindings: both come from this config
        raise ConfigError(f"{config_source(path)}: {exc}") from exc
    if graph == "live" and (small := _sim_cameras_too_small(config, bindings)):
        raise invalid_config(config_source(path), small)
    for doubt in doubtful_settings(config):
        log.warning("%s: %s", config_source(path), doubt)
    if graph == "offline" and (ignored := config.live_only(graph)):
        log.info("%s: live only, not in the offline graph", ", ".join(ignored))


def _sim_cameras_too_small(config: Config, bindings: Bindings) -> list[str]:
    """The simulated cameras whose frames (CAMERA_SHAPE) are smaller than their model input: ingest
    would drop every one (`schema_preprocess`), the stream silent from the start."""
    from fusion_pipeline.preprocess import CameraParams
    from fusion_pipeline.sim.world import CAMERA_SHAPE

    height, width, _ = CAMERA_SHAPE
    problems = []
    for i, stream in enumerate(config.streams):
        binding = bindings.by_stream.get(stream.name)
        if stream.driver != "sim" or binding is None or not isinstance(binding.prepare.params, CameraParams):
            continue
        out_h, out_w = binding.prepare.params.size_hw
        if out_h > height or out_w > width:
            problems.append(
                f"streams[{i}] ({stream.name}): the simulated camera renders {height}x{width}, smaller than "
                f"model input {binding.input.name!r} ({out_h}x{out_w}): ingest would drop every frame; "
                'run this model with real cameras (driver = "external") or replay a log'
            )
    return problems


def _view_ports(view: ViewConfig) -> list[tuple[str, int]]:
    """The fixed ports (0: any free) the viewer node's servers bind on 127.0.0.1."""
    ports = [("web_port", view.web_port), ("grpc_port", view.grpc_port)] if view.web else []
    ports += [("foxglove_port", view.foxglove_port)] if view.foxglove else []
    return [(key, port) for key, port in ports if port]


def _check_port_free(key: str, port: int) -> None:
    """Refuse a port another program serves: the viewer node would fail on it at every restart."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers bind it
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            raise ConfigError(
                f"view.{key} {port}: cannot be served on 127.0.0.1 ({exc.strerror}): another program holds "
                "it; choose another port, or 0 for any free one"
            ) from None


def _run(args: argparse.Namespace) -> int:
    """run the live pipeline (default: the embedded demo with simulated sensors)

    Start every node of the config as its own process, restart failed ones, print a status line, and a
    latency summary at the end (Ctrl-C or --duration).
    """
    from fusion_pipeline.ops.supervisor import Supervisor

    check_output_path(args.summary_json, "--summary-json", new=True)
    config = load_config(args.config)
    _check_live(config, args.config)
    if config.view.enabled:  # another program on a fixed port: the viewer would only crash-loop
        for key, port in _view_ports(config.view):
            _check_port_free(key, port)
    supervisor = Supervisor(config, args.config, warmup_s=args.warmup)
    stop_on_signals(lambda *_: supervisor.stop())
    summary = supervisor.run(args.duration)
    print(format_summary(summary), file=sys.stderr)
    if args.summary_json is not None:
        write_new_text(args.summary_json, json.dumps(summary, indent=2) + "\n")
    if failing := _crash_looping(summary):
        print(
            f"fusion-pipeline run: exit 1: {', '.join(failing)} failed again after each restart and never "
            "came up (their log lines say why)",
            file=sys.stderr,
        )
        return 1
    return 0


def _crash_looping(summary: dict[str, Any]) -> list[str]:
    """The nodes a run ended without, having restarted them more than once: a start that keeps failing
    (a node killed once is back within a second or two), which makes the run's exit status 1."""
    return [node for node in summary.get("not_up", []) if summary["restarts"].get(node, 0) >= 2]


def _check_live(config: Config, path: Path | None) -> None:
    """What `run` refuses before it starts anything: `preflight`, and the [view] extra when the config
    runs a viewer node (said now, not in its restarts)."""
    preflight(config, path)
    if config.view.enabled:
        try:
            import fusion_pipeline.view  # noqa: F401
        except FusionError as exc:
            raise ConfigError(f"{config_source(path)}: view.enabled: {exc}") from exc


def _warm_up_on_cpu(config: Config, source: str) -> None:
    """The inference node's warm-up run, on the CPU: an output size the graph leaves open is known only
    when it runs, and a model whose outputs come out of another size than its contract's would make the
    inference node fail at each restart. On one CPU thread, beside a running service (the check is made
    before restarting it), and not on the config's providers: TensorRT would build its engines, for
    minutes. A model the CPU cannot run (an op with a GPU kernel only) is left to the inference node."""
    from fusion_pipeline.inference import ModelRuntime

    on_cpu = config.model.model_copy(update={"providers": ["cpu"], "tensorrt": False, "intra_op_threads": 1})
    try:
        runtime = ModelRuntime(config.model_copy(update={"model": on_cpu}), warm_up=0)
    except FusionError as exc:
        log.warning(
            "%s: the model's warm-up is left to the inference node: not on the CPU here: %s", source, exc
        )
        return
    try:
        runtime.warm_up(1)
    except FusionError as exc:
        raise ConfigError(f"{source}: {exc}") from exc


def _config_check(args: argparse.Namespace) -> int:
    """refuse or accept a config as `run` would, starting nothing

    The checks `run` makes before it starts a node: the config's keys and values, its model and the
    streams that feed it (and the model's warm-up run, on the CPU, as the inference node makes it), output
    paths, the key files of [security], the ipc paths and directories of
    its run directory (a private temp one when pipeline.run_dir is empty). Not whether ports and sockets
    are free: a running service holds them. Relative paths are read from the working directory, as the
    service reads them from its own (the unit's WorkingDirectory): run it from there. Run it after editing
    the service's config, before restarting the service. Exit 0 and one line on success, 2 and the
    reason otherwise. --drivers-only: for a host that runs only the config's simulated drivers.
    """
    from fusion_pipeline.ops import LIVE_GRAPH, check_run_host, run_sockets

    config = load_config(args.config)
    source = config_source(args.config)
    _check_live(config, args.config)
    if not args.drivers_only:
        _warm_up_on_cpu(config, source)
    name = config.pipeline.name
    # A private run dir is made at start as tempfile.mkdtemp makes it: its path is as long as this one.
    run_dir = Path(config.pipeline.run_dir or Path(tempfile.gettempdir(), f"fusion-{name}-xxxxxxxx"))
    check_run_host(
        config,
        args.config,
        run_dir.expanduser().resolve(),
        run_sockets(LIVE_GRAPH),
        create=False,
        own_drivers=not args.drivers_only,
    )
    if relative := _relative_paths(config):
        log.warning(
            "%s: relative paths, read from the working directory (here %s; the service's is its unit's "
            "WorkingDirectory): %s",
            source,
            Path.cwd(),
            ", ".join(relative),
        )
    streams = ", ".join(s.name for s in config.streams)
    model = config.model.path or "the shipped default model"
    print(
        f"{source}: ok: pipeline {name!r}, {len(config.streams)} streams ({streams}), "
        + (
            "for a host of its simulated drivers alone"
            if args.drivers_only
            else f"{config.pipeline.composition}, model {model}"
        )
    )
    return 0


def _drops(drops: dict[str, dict[str, int]]) -> str:
    """A line per node, indented under the heading it follows (a surround suite's 11 streams made one
    line of a thousand characters)."""
    return "".join(f"\n  {node}: {_counts(reasons)}" for node, reasons in drops.items())


def _relative_paths(config: Config) -> list[str]:
    """The config's file paths that are relative, as "key = value"."""
    model = config.model.path
    paths = {
        "pipeline.run_dir": config.pipeline.run_dir,
        "model.path": "" if model.startswith(SHIPPED) else model,
        "record.path": config.record.path if config.record.enabled else "",
        "view.save": config.view.save if config.view.enabled else "",
        "security.certificate": config.security.certificate,
        "security.server_key": config.security.server_key,
        "security.authorized_keys": config.security.authorized_keys,
    }
    home = ("pipeline.run_dir", "model.path")  # read with ~ expanded
    return [
        f"{key} = {value}"
        for key, value in paths.items()
        if value and not (Path(value).expanduser() if key in home else Path(value)).is_absolute()
    ]


def _config_show(args: argparse.Namespace) -> int:
    """print a config's text: a shipped one (-c package:NAME.toml), by default the embedded demo

    To start a config of your own from a shipped one on an installed copy: `fusion-pipeline config
    show -c package:surround.toml > mine.toml`.
    """
    print(read_config_text(args.config or SHIPPED + DEMO_CONFIG), end="")
    return 0


def _config_unit(args: argparse.Namespace) -> int:
    """print the systemd unit that runs the pipeline as a service (docs/OPERATIONS.md, "The unit")"""
    print(resources.files("fusion_pipeline").joinpath("configs", SERVICE_UNIT).read_text(), end="")
    return 0


def _reference_losses(summary: dict[str, Any]) -> str:
    """What became of the reference's messages that gave no result: among those counted, the ones
    published before the synchronizer was connected; besides them, those ingest passed over for newer
    ones (it was behind) and those that never arrived (seq gaps)."""
    losses = [
        f"{n} {what}"
        for n, what in (
            (summary.get("reference_unsynchronized", 0), "of them before the synchronizer was connected"),
            (summary["reference_skipped"], "more passed over by ingest for newer ones"),
            (summary["reference_lost"], "more never arrived"),
        )
        if n
    ]
    return f" ({', '.join(losses)})" if losses else ""


def format_summary(summary: dict[str, Any]) -> str:
    """The human-readable end-of-run report."""
    from fusion_pipeline.ops import metrics

    timed, expected = summary["result_ratio_counts"]
    ratio = summary["result_ratio"]
    restarted = {node: n for node, n in summary["restarts"].items() if n}
    reference = summary.get("reference_stream")
    results = summary["results_published"] or summary["results"]
    # A simulated driver's faults are captures it never sent: ingest sees each as a gap (seq_lost) too.
    drivers = {n: reasons for n, reasons in summary["drops"].items() if n.startswith("sensor_sim:")}
    pipeline = {n: reasons for n, reasons in summary["drops"].items() if n not in drivers}
    lines = [
        f"== {summary['pipeline']}: {summary['duration_s']:.1f} s, provider {summary['provider'] or '-'}",
        f"results {results}"
        + (f" ({summary['results']} reached the supervisor)" if summary["results"] != results else "")
        + (f" for {summary['reference_messages']} reference messages" if reference else "")
        + _reference_losses(summary)
        + "; "
        + (
            f"ratio {ratio} ({timed} for {expected}, from the reference's first heartbeat after the warm-up "
            "to its last one a second before the stop)"
            + (
                f"; {unreported} of the messages counted from their results: the reference's ingest "
                "heartbeats had not reported them, as when its node is killed or a message is in flight "
                "at the window's edge"
                if (unreported := summary.get("result_ratio_unreported"))
                else ""
            )
            if ratio is not None
            else "a replay: the replay report below counts results against the log"
            if summary.get("log_time")
            else "no result ratio: no reference stream (sync.reference), nothing to count results against"
            if not reference
            else f"no result ratio: nothing of the reference {reference} arrived"
            if reference in summary["nothing_received"]
            else "no result ratio: the run was too short after the warm-up for two reference heartbeats"
        ),
        f"sets full {summary['sets_full']}, partial {summary['sets_partial']} of the results received "
        f"(missing: {_counts(summary['missing'])}); the synchronizer's: full {summary['sync_sets_full']}, "
        f"partial {summary['sync_sets_partial']}, dropped for a missing required stream "
        f"{summary['sync_sets_missing_required']}; inference skipped {summary['inference_skipped']}",
        *(
            [f"NOTHING received from {', '.join(silent)}: a dead or absent sensor (its driver, its endpoint)"]
            if (silent := summary["nothing_received"])
            else []
        ),
        *(
            [
                "SILENT when the run stopped: "
                + ", ".join(
                    f"{name}{' (required)' if silent['required'] else ''} for {silent['silent_s']:g} s"
                    for name, silent in stopped.items()
                )
                + ": a sensor that stopped sending, or all it sent dropped (its driver, its endpoint, the "
                "drops below); the result ratio counts only the reference messages that arrived"
            ]
            if (stopped := summary.get("silent_at_stop"))
            else []
        ),
        *(
            [f"HANDSHAKE FAILING at the stop: {name}: {failing}" for name, failing in failings.items()]
            if (failings := summary.get("handshake_failing"))
            else []
        ),
        *(
            [
                f"NOT UP when the run stopped (no heartbeat): {', '.join(down)}: a run too short for them to "
                "start (--duration), or a start that fails (their log lines)"
            ]
            if (down := summary.get("not_up"))
            else []
        ),
        *(
            [f"streams in no model input: {metrics.unbound_held(held, summary['sync_sets_published'])}"]
            if (held := summary.get("unbound_held"))
            else []
        ),
        f"restarts {summary['restarts_total']}: {_counts(restarted)}",
        "drops:" + (_drops(pipeline) or " none"),
        *(
            [
                "not sent by the simulated drivers (each a gap ingest counts as seq_lost, once the "
                "stream sends again):" + _drops(drivers)
            ]
            if drivers
            else []
        ),
    ]
    rows = [(stage, p) for stage, p in summary["latency_ms"].items() if p["n"]]
    if not rows:
        return "\n".join([*lines, "latency: no result after the warm-up"])
    lines += [
        "latency ms (a replay: stamps are the log's, so only the stages from ingest_in on):"
        if summary.get("log_time")
        else f"latency ms (results captured {summary['warmup_s']:g} s after every node was up, or the start "
        "timeout):",
        f"  {'stage':<32} {'n':>6} {'p50':>8} {'p95':>8} {'p99':>8} {'max':>8}",
    ]
    for stage, p in rows:
        figures = " ".join(f"{p[k]:>8.2f}" for k in ("p50", "p95", "p99", "max"))
        lines.append(f"  {stage:<32} {p['n']:>6} {figures}")
    return "\n".join(lines)


def _counts(counts: dict[str, int]) -> str:
    """'camera/front superseded 89, late 7' from {'dropped.camera/front.superseded': 89, 'late': 7}."""
    named = (f"{name.removeprefix('dropped.').replace('.', ' ')} {n}" for name, n in counts.items())
    return ", ".join(named) or "none"
