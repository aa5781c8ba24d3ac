"""Inference node: synchronized sets in, model results out.

    python -m nodes.inference --config PATH --run-dir DIR

Builds a fusion_pipeline.inference.ModelRuntime (contract checked against the config, providers from
``[model]``, warm-up), then loops: take the NEWEST set on the sync endpoint (a set that waited behind
another is stale for a planner; what was skipped is counted), run the model, publish the result on the
output endpoint with every stage timestamp (docs/PROTOCOL.md section 8). With --replay it takes every
set in turn and blocks rather than drops a result. Refuses to start (exit 2) on a
missing or mismatched model, and says so loudly when it fell back to a provider it did not want first.
"""

from __future__ import annotations

import logging
import time

from fusion_pipeline.contract import ContractError
from fusion_pipeline.inference import RESULT_MODALITY, RESULT_STREAM, ModelRuntime, result_sample
from fusion_pipeline.node import Heartbeat, node_arguments, run_node, shut_down, stop_requested
from fusion_pipeline.sync import SET_STREAM
from fusion_pipeline.transport import Publisher, Role, Subscriber

log = logging.getLogger("nodes.inference")

POLL_MS = 50  # the longest the loop waits before it checks for a stop request and beats


def main(argv: list[str] | None = None) -> int:
    ctx = node_arguments("inference", argv, realtime=True)
    config = ctx.config
    runtime = ModelRuntime(config)  # a model that does not fit the config ends the node (run_node)
    if runtime.fell_back:
        log.warning("WARNING: %s", runtime.describe())
    else:
        log.info("%s", runtime.describe())
    slowdown = config.model.slowdown
    if slowdown > 1:
        log.warning("fault injection: model runs slowed %gx (model.slowdown)", slowdown)
    sets_url, results_url = ctx.endpoint(config.sync.endpoint), ctx.endpoint(config.output.endpoint)
    source = Subscriber(sets_url, topics=[SET_STREAM], role=Role.SET, curve=config.curve_for(sets_url))
    sink = Publisher(
        results_url,
        stream=RESULT_STREAM,
        modality=RESULT_MODALITY,
        role=Role.RESULT,
        hwm=config.output.hwm,
        lossless=ctx.replay,
        curve=config.curve_for(results_url),
    )
    heartbeat = Heartbeat(ctx)
    published = bad_sets = 0
    # Live, a late set is worth less than the newest one; a replay (lossless upstream) takes every set.
    receive = source.recv if ctx.replay else source.recv_newest

    def counters() -> dict[str, object]:
        return {**source.counters(), "results": published, "bad_sets": bad_sets, "provider": runtime.provider}

    try:
        while not stop_requested():
            fused = receive(timeout_ms=POLL_MS)
            if fused is not None:
                start = time.time_ns()
                try:
                    outputs = runtime.infer(fused.arrays, fused.meta.get("presence", ()))
                except ContractError as exc:
                    bad_sets += 1
                    log.debug("set %d refused: %s", fused.seq, exc)
                    continue
                if slowdown > 1:  # fault injection: a slower model, as the stages and the loop see it
                    time.sleep((slowdown - 1) * (time.time_ns() - start) / 1e9)
                end = time.time_ns()
                result = result_sample(fused, outputs, runtime.contract, runtime.provider, published)
                result.meta["stages"].update(inference_start=start, inference_end=end)
                result.meta["stages"]["publish"] = time.time_ns()
                sink.send(result)
                published += 1
            heartbeat.beat(counters())
    finally:
        shut_down(heartbeat, counters(), sink, source)
    return 0


if __name__ == "__main__":
    run_node(main)
