"""Several `model train --seeds` runs side by side: accuracy per presence pattern, and issue 17's checks.

    python tools/model_compare.py placeholder=data/s17/placeholder impute=data/s17/impute \
        recipe=data/s17/recipe [--model attention] [--write docs/MODEL.md]

Reads each run dir's `eval.json` (`model eval --run-dir DIR`) and, where present, its `corruptions.json`
(`model eval --run-dir DIR --corruptions all --severities 2`). Prints, per presence pattern, the fused
model's class accuracy in each run as mean (min-max) over the training seeds; then per run the checks of
issue 17 (mean over the seeds): the worst one-sensor-missing drop (<= 0.03), each sensor left alone
against that sensor's own model (within 0.03), and the accuracy drop at middle severity averaged over the
corruption kinds (<= 0.05). --write replaces the `model-compare` section of a document (its markers).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from fusion_pipeline.model.evaluate import corruption_summary, markers

MAX_MISSING_DROP = 0.03
MAX_SINGLE_GAP = 0.03
MAX_CORRUPTION_DROP = 0.05
MIDDLE_SEVERITY = 2
SECTION = "model-compare"


def _cell(row: dict[str, Any]) -> str:
    low, high = row.get("range", {}).get("accuracy", (row["accuracy"], row["accuracy"]))
    return f"{row['accuracy']:.3f} ({low:.3f}-{high:.3f})"


def checks(rows: dict[str, dict[str, Any]], baselines: dict[str, float], corruption: float | None) -> str:
    """Issue 17's checks for one run: `rows` the fused model's per pattern, `baselines` each sensor's own
    model's accuracy, `corruption` the middle-severity drop (None: not evaluated)."""
    full = rows["all"]["accuracy"]
    drops = {p: full - r["accuracy"] for p, r in rows.items() if p.startswith("no ")}
    worst = max(drops, key=lambda p: drops[p])
    gaps = {m: baselines[m] - rows[f"{m} only"]["accuracy"] for m in baselines if f"{m} only" in rows}
    every = "meets" if max(gaps.values()) <= MAX_SINGLE_GAP else "misses"
    parts = [
        f"worst one-missing drop {drops[worst]:.3f} ({worst}; "
        f"{'meets' if drops[worst] <= MAX_MISSING_DROP else 'misses'} <= {MAX_MISSING_DROP})",
        "one sensor left, its own model minus the fused: "
        + ", ".join(f"{m} {gap:+.3f}" for m, gap in gaps.items())
        + f" ({every} <= {MAX_SINGLE_GAP} for every sensor)",
    ]
    if corruption is not None:
        verdict = "meets" if corruption <= MAX_CORRUPTION_DROP else "misses"
        parts.append(
            f"middle-severity corruption drop {corruption:.3f} averaged over the kinds "
            f"({verdict} <= {MAX_CORRUPTION_DROP})"
        )
    return "; ".join(parts)


def compare(runs: dict[str, Path], model: str) -> str:
    """The Markdown: the per-pattern table and one line of checks per run."""
    evals = {name: json.loads((path / "eval.json").read_text()) for name, path in runs.items()}
    fused = {name: {r["pattern"]: r for r in e["rows"] if r["model"] == model} for name, e in evals.items()}
    for name, rows in fused.items():
        if not rows:
            raise SystemExit(f"{runs[name]}/eval.json: no rows of model {model!r}")
    patterns = list(next(iter(fused.values())))
    lines = [
        f"| {model}: sensors present | " + " | ".join(runs) + " |",
        "|---|" + "---|" * len(runs),
        *(
            f"| {p} | " + " | ".join(_cell(fused[n][p]) if p in fused[n] else "-" for n in runs) + " |"
            for p in patterns
        ),
        "",
    ]
    for name, path in runs.items():
        baselines = {
            r["model"].removesuffix("-only"): r["accuracy"]
            for r in evals[name]["rows"]
            if r["model"].endswith("-only")
        }
        corruptions = path / "corruptions.json"
        drop = None
        if corruptions.is_file():
            summary = corruption_summary(json.loads(corruptions.read_text())["rows"])
            drop = summary.get(model, {}).get(MIDDLE_SEVERITY)
        seeds = evals[name]["setup"]["seed"]
        lines.append(f"- **{name}** (`{path}`, seeds {seeds}): {checks(fused[name], baselines, drop)}.")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", metavar="NAME=RUN_DIR", help="run dirs of `model train --seeds`")
    parser.add_argument("--model", default="attention", help="the fused model to compare (%(default)s)")
    parser.add_argument("--write", type=Path, default=None, help="replace the model-compare section here")
    args = parser.parse_args()
    runs: dict[str, Path] = {}
    for item in args.runs:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            parser.error(f"{item!r}: expected NAME=RUN_DIR")
        if name in runs:
            parser.error(f"{name!r}: given twice")
        runs[name] = Path(path)
    text = compare(runs, args.model)
    print(text)
    if args.write is not None:
        begin, end = markers(SECTION)
        doc = args.write.read_text()
        if begin not in doc or end not in doc:
            raise SystemExit(f"{args.write}: no {begin} ... {end} markers to write between")
        start, stop = doc.index(begin), doc.index(end) + len(end)
        args.write.write_text(doc[:start] + f"{begin}\n{text}{end}" + doc[stop:])


if __name__ == "__main__":
    main()
