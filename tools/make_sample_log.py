"""Make a demo log: the simulated sensors of a config, rendered straight into an MCAP log (no processes).

    python tools/make_sample_log.py -o demo.mcap [-c CONFIG] [--duration 20] [--start-s 1700000000]

Each simulated stream follows its own `fusion_pipeline.sim.SensorSchedule` (rate, latency, jitter, drops,
outages from ``[streams.sim]``) and renders with `fusion_pipeline.sim.render`, exactly what
fusion_pipeline/nodes/sensor_sim.py would publish, numbered the same way (a lost capture leaves a seq
gap). Messages are written in send order with log_time = send time, as a recorder on the same host would
have received them.
The same arguments give the same file contents, so tests and benchmarks can rebuild what they need.
"""

from __future__ import annotations

import argparse
import heapq
import sys
import time
from pathlib import Path

from fusion_pipeline.config import Config, load_config
from fusion_pipeline.errors import FusionError
from fusion_pipeline.logs import LogWriter, stream_metadata
from fusion_pipeline.sim import SensorSchedule, SimSettings, World, render
from fusion_pipeline.transport import Sample

#: A fixed start (2023-11-14 22:13:20 UTC), so that the same arguments give the same log.
DEFAULT_START_S = 1_700_000_000


def make_log(config: Config, path: Path, duration_s: float, start_ns: int) -> dict[str, int]:
    """Write `duration_s` of every simulated stream of `config` to `path`; return messages per stream."""
    streams = [s for s in config.streams if s.driver == "sim"]
    end_ns = start_ns + round(duration_s * 1e9)
    schedules, worlds, seqs = {}, {}, {}
    queue: list[tuple[int, int, str]] = []  # (send_ns, stream index, name): ties broken by config order
    for stream in streams:
        settings = SimSettings.from_stream(stream)
        schedules[stream.name] = SensorSchedule(stream, settings, start_ns)
        worlds[stream.name] = World(settings.seed)
        seqs[stream.name] = 0
    pending = {name: schedule.next() for name, schedule in schedules.items()}
    for index, stream in enumerate(streams):
        heapq.heappush(queue, (pending[stream.name].send_ns, index, stream.name))
    counts = dict.fromkeys(seqs, 0)
    by_name = {s.name: s for s in streams}
    with LogWriter(
        path,
        metadata={"recorded_by": "tools/make_sample_log.py", "pipeline": config.pipeline.name},
        streams={s.name: stream_metadata(s) for s in streams},
    ) as writer:
        while queue:
            send_ns, index, name = heapq.heappop(queue)
            capture, stream = pending[name], by_name[name]
            if capture.stamp_ns >= end_ns:
                continue  # this stream is done; the others go on
            if capture.sent:
                arrays, meta = render(worlds[name], stream, capture, schedules[name].chunk)
                sample = Sample(
                    name, stream.modality, seqs[name], capture.stamp_ns, arrays, stream.frame_id, meta
                )
                writer.write(sample, log_time_ns=send_ns)
                counts[name] += 1
            seqs[name] += 1
            pending[name] = schedules[name].next()
            heapq.heappush(queue, (pending[name].send_ns, index, name))
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--out", type=Path, required=True, help="output .mcap")
    parser.add_argument(
        "-c", "--config", type=Path, default=None, help="TOML config (default: embedded demo)"
    )
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of log (default 20)")
    parser.add_argument("--start-s", type=float, default=DEFAULT_START_S, help="first stamp, UNIX seconds")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        counts = make_log(load_config(args.config), args.out, args.duration, round(args.start_s * 1e9))
    except FusionError as exc:  # a bad config, an existing output: said in a line, as the CLI does
        parser.error(str(exc))
    size = args.out.stat().st_size
    print(
        f"{args.out}: {args.duration:g} s, {sum(counts.values())} messages ({counts}), "
        f"{size / 1e6:.1f} MB, made in {time.perf_counter() - started:.1f} s",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
