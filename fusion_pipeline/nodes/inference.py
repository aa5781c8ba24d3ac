"""Inference node: synchronized sets in, model results out.

    python -m fusion_pipeline.nodes.inference --config PATH --run-dir DIR

Builds a fusion_pipeline.inference.InferenceStage around a ModelRuntime (contract checked against the
config, providers from ``[model]``, warm-up), then loops: take the NEWEST set on the sync endpoint (a set
that waited behind another is stale for a planner; what was skipped is counted, and as `sets_lost` the
sets a full queue dropped before they came: the gaps in the synchronizer's numbering), run the stage, publish
its result on the output endpoint with every stage timestamp (docs/PROTOCOL.md section 8). With --replay
it takes every set in turn and blocks rather than drops a result. Refuses to start (exit 2) on a
missing or mismatched model, and says so loudly when it fell back to a provider it did not want first.
"""

from __future__ import annotations

import logging
import time

from fusion_pipeline.config import Config
from fusion_pipeline.inference import InferenceStage, ModelRuntime
from fusion_pipeline.node import POLL_MS, Node, run_node
from fusion_pipeline.protocol import PUBLISH, SET_STREAM, SeqGaps
from fusion_pipeline.transport import Role

log = logging.getLogger("fusion_pipeline.nodes.inference")


def start_inference(config: Config) -> InferenceStage:
    """The inference stage of `config`, its providers logged (a fallback as a WARNING). A model that
    does not fit the config raises ContractError, which ends the node (run_node)."""
    stage = InferenceStage(ModelRuntime(config), config.model.slowdown)
    if stage.runtime.fell_back:
        log.warning("WARNING: %s", stage.runtime.describe())
    else:
        log.info("%s", stage.runtime.describe())
    if stage.slowdown > 1:
        log.warning("fault injection: model runs slowed %gx (model.slowdown)", stage.slowdown)
    return stage


def main(argv: list[str] | None = None) -> int:
    with Node("inference", argv, realtime=True) as node:
        config = node.config
        stage = start_inference(config)
        source = node.subscriber(node.endpoint(config.sync.endpoint), topics=[SET_STREAM], role=Role.SET)
        sink = node.results_publisher()
        # Sets the synchronizer sent that a full queue dropped; one the socket refused (counted by its
        # reason) is seen through its header, unless even that could not be read.
        gaps, lost = SeqGaps(), [0]

        def seen(seq: int) -> bool:
            lost[0] += gaps.missing_before(seq)
            return True

        source.on_refused = lambda header: gaps.pass_over(header.get("seq"))

        def counters() -> dict[str, object]:
            return {**source.counters(), **stage.counters(), "sets_lost": lost[0]}

        for _ in node.loop(counters):
            if node.replay:  # lossless upstream: every set, in turn
                fused = source.recv(timeout_ms=POLL_MS)
                if fused is not None:
                    seen(fused.seq)
            else:  # a late set is worth less than the newest one: each drained one is seen, then skipped
                fused = source.recv_newest(timeout_ms=POLL_MS, admit=lambda checked: seen(checked.sample.seq))
            result = None if fused is None else stage.run(fused)
            if result is not None:
                result.meta["stages"][PUBLISH] = time.time_ns()
                sink.send(result)
    return 0


if __name__ == "__main__":
    run_node(main)
