"""Simulated sensor driver: one process per simulated stream, publishing wire v1 in real time.

    python -m fusion_pipeline.nodes.sensor_sim --config PATH --run-dir DIR --stream NAME

Renders the stream's sensor from the shared seeded world (fusion_pipeline.sim) and publishes each capture on
the stream's endpoint at its send time, with a Publisher from the node framework: the same bytes an
external driver following docs/PROTOCOL.md sends (or, with ``pipeline.shm``, the same header with its
large arrays in shared memory). A capture is rendered just ahead of its
send time (fusion_pipeline.sim.drivers.RenderLead): the simulator's render cost adds no latency a real sensor
would not have (``latency_ms`` models that), and it stays off the CPU while the pipeline processes the
capture just sent. A driver that falls more than one period behind skips the captures it can no
longer send on time. Its heartbeat says how late it sent (``send_late_ms_*``, over the last
LATENESS_WINDOW captures: woken after the send time by a busy CPU), a part of every capture's
``capture -> ingest_in`` that is the simulator's, not the pipeline's.
"""

from __future__ import annotations

import logging
import time
from collections import deque

from fusion_pipeline.node import Node, run_node, stream_hwm
from fusion_pipeline.ops import percentiles
from fusion_pipeline.sim import RenderLead, SensorSchedule, SimSettings, World, render

log = logging.getLogger("fusion_pipeline.nodes.sensor_sim")

LATENESS_WINDOW = 1000  # captures behind the send_late_ms_* heartbeat figures


def main(argv: list[str] | None = None) -> int:
    with Node("sensor_sim", argv, per_stream=True) as node:
        stream = node.stream
        settings = SimSettings.from_stream(stream)
        world = World(settings.seed)
        if stream.modality == "camera":
            world.warm_camera(settings.mount)
        schedule = SensorSchedule(stream, settings, time.time_ns())
        url = node.endpoint(stream.endpoint)
        publisher = node.publisher(
            url, stream.name, stream.modality, frame_id=stream.frame_id, hwm=stream_hwm(stream)
        )
        lead = RenderLead(schedule.period_ns)
        counts = {"published": 0, "dropped": 0, "outage": 0, "late": 0}
        late_ns: deque[int] = deque(maxlen=LATENESS_WINDOW)  # send time to the publish call, per capture

        def counters() -> dict[str, float]:
            lateness = percentiles(late_ns)
            return {
                **counts,
                **{f"send_late_ms_{k}": lateness[k] for k in ("p50", "p99", "max") if k in lateness},
            }

        log.info(
            "%s at %g Hz -> %s (%s)",
            stream.modality,
            settings.rate_hz(stream),
            publisher.last_endpoint,
            settings.describe(),
        )
        for _ in node.loop(counters):
            late = schedule.skip_to(time.time_ns())
            if late:
                publisher.seq += late  # frames a late driver never sent are lost: the receiver sees a gap
                if not counts["late"]:  # the first time; the heartbeat counts every one
                    log.warning("starved of CPU: skipped %d capture(s) it could no longer send on time", late)
                counts["late"] += late
            capture = schedule.next()
            if not capture.sent:
                # Lost when it would have been sent: counted as it happens, never a busy walk through the
                # captures ahead (an outage for good spun a core and counted millions).
                if not node.sleep_until(capture.send_ns):
                    break
                publisher.seq += 1
                counts[capture.why] += 1
                continue
            if not node.sleep_until(capture.send_ns - lead.lead_ns()):
                break
            started = time.perf_counter_ns()
            arrays, meta = render(world, stream, capture, schedule.chunk)
            lead.update(time.perf_counter_ns() - started)
            if not node.sleep_until(capture.send_ns):
                break
            late_ns.append(time.time_ns() - capture.send_ns)
            publisher.publish(capture.stamp_ns, arrays, meta=meta)
            counts["published"] += 1
    return 0


if __name__ == "__main__":
    run_node(main)
