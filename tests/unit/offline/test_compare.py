"""Two runs' results compared by stamp: unmatched stamps counted on each side, class outputs agreeing by
class name (whatever order each model gives its classes), other outputs by their mean absolute
difference; comparisons of several logs merge as one."""

from __future__ import annotations

import numpy as np
import pytest

from fusion_pipeline.contract import ModelContract, OutputSpec, default_contract
from fusion_pipeline.inference import result_sample
from fusion_pipeline.offline.compare import Comparison, compare_results
from fusion_pipeline.transport import Sample

LIDAR = default_contract().input("lidar")


def contract(classes: tuple[str, ...], *extra: OutputSpec) -> ModelContract:
    outputs = (OutputSpec("intent_logits", (3,), "class_logits", classes=classes), *extra)
    return ModelContract((LIDAR,), outputs, presence_order=("lidar",))


OURS = contract(("stop", "go", "turn"), OutputSpec("distance", (2,), "regression"))
# Another model: the same classes in another order, the same distance output, and one more output.
THEIRS = contract(
    ("turn", "stop", "go"),
    OutputSpec("distance", (2,), "regression"),
    OutputSpec("speed", (1,), "regression"),
)


def result(model: ModelContract, stamp: int, intent: str, distance: tuple[float, ...]) -> Sample:
    classes = model.outputs[0].classes
    logits = np.where(np.array(classes) == intent, 2.0, 0.0).astype(np.float32)
    outputs = {"intent_logits": logits, "distance": np.array(distance, np.float32)}
    if any(o.name == "speed" for o in model.outputs):
        outputs["speed"] = np.zeros(1, np.float32)
    set_sample = Sample("set/fused", "set", stamp, stamp, {}, "", {"presence": [1]})
    return result_sample(set_sample, outputs, model, "CPUExecutionProvider", seq=stamp)


def test_results_match_by_stamp_and_compare_by_class_name_and_difference() -> None:
    ours = [
        result(OURS, 10, "stop", (1.0, 2.0)),
        result(OURS, 20, "go", (3.0, 3.0)),
        result(OURS, 30, "turn", (0.0, 0.0)),
        result(OURS, 40, "go", (5.0, 5.0)),  # no result of theirs at 40
    ]
    theirs = [
        result(THEIRS, 5, "go", (9.0, 9.0)),  # none of ours at 5
        result(THEIRS, 10, "stop", (1.5, 2.0)),
        result(THEIRS, 20, "turn", (3.0, 1.0)),
        result(THEIRS, 30, "turn", (0.0, -1.0)),
    ]
    comparison = compare_results(ours, theirs)
    assert (comparison.matched, comparison.only_here, comparison.only_other) == (3, 1, 1)
    figures = comparison.as_json()["outputs"]
    assert figures["intent_logits"] == {"kind": "class_logits", "compared": 3, "class_agreement": 2 / 3}
    # |diff| over the 3 matched results x 2 values: 0.5 + 0 + 0 + 2 + 0 + 1
    assert figures["distance"]["mean_abs_diff"] == pytest.approx(3.5 / 6)
    assert comparison.unshared_outputs == {"speed"}


def test_outputs_of_another_shape_are_counted_not_compared() -> None:
    longer = contract(("stop", "go", "turn"), OutputSpec("distance", (3,), "regression"))
    comparison = compare_results(
        [result(OURS, 1, "go", (1.0, 1.0))], [result(longer, 1, "go", (1.0, 1.0, 1.0))]
    )
    distance = comparison.as_json()["outputs"]["distance"]
    assert distance == {"kind": "regression", "compared": 0, "mean_abs_diff": None, "mismatched_shapes": 1}


def test_comparisons_of_several_logs_merge_as_one() -> None:
    ours = [result(OURS, s, "go", (float(s), 0.0)) for s in range(6)]
    theirs = [result(OURS, s, "go" if s % 2 else "stop", (0.0, 0.0)) for s in range(1, 7)]
    merged = Comparison()
    for stamps in (range(0, 3), range(3, 7)):  # two logs: their results split by stamp
        merged.merge(
            compare_results(
                [r for r in ours if r.stamp_ns in stamps], [r for r in theirs if r.stamp_ns in stamps]
            )
        )
    assert merged.as_json() == compare_results(ours, theirs).as_json()
