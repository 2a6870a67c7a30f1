"""The headline of a run's report: does each iteration give better units than the one before?

quality/report.md opens with one table on the report split: the iteration-1 teacher's features
(MFCC), the iteration-1 model and the iteration-2 model (each at its layer chosen on valid, newest
checkpoint), each with PNMI, triphone ABX within (and across) speaker and the phone probe's PER,
all with 95% intervals; then the answer per measure (does each row beat the one before it, by
an interval that excludes zero?), the budget every row got, and the curve over training: at every
scanned checkpoint, the layer best on valid and its PNMI, as a table and as
pnmi_over_training.png. quality/quality.json holds the same: the rows under "headline", the
answers under "rises", the curves under "curves".
"""
from __future__ import annotations

from pathlib import Path

from clustering.row_quality import QualityData
from clustering.row_report import write_quality

CURVE_PLOT = "pnmi_over_training.png"
NO_SCAN = "No answer: the layer scans did not run (scan_layers = false), so no model row was measured."
ON_VALID = ("Layers were chosen on the split they are scored on: there is no test split, or it is empty; set "
            "(or raise) test_percent for a second held-out split to report on.")


def curves(scans: dict[int, dict | None]) -> dict:
    """{"it1": [{"update", "layer", "valid", "test"}, ...], ...}: per scanned checkpoint, the layer best
    on valid and its PNMI on every scanned split."""
    return {f"it{number}": [{"update": update, **_best_on_valid(scores)}
                            for update, scores in sorted(scan["by_update"].items())]
            for number, scan in scans.items() if scan is not None}


def _best_on_valid(scores: dict[str, dict[int, float]]) -> dict:
    layer = max(scores["valid"], key=scores["valid"].get)
    return {"layer": layer, **{split: by_layer[layer] for split, by_layer in scores.items()}}


def curve_lines(by_model: dict) -> list[str]:
    """Markdown table: per model and scanned update, the layer best on valid and its PNMI per split."""
    splits = [s for s in ("valid", "test") if any(s in p for c in by_model.values() for p in c)]
    lines = ["", "Over training (the layer best on valid at each checkpoint; PNMI with the same budget):", "",
             "| model | update | layer | " + " | ".join(f"PNMI {s}" for s in splits) + " |",
             "| --- | --- | --- |" + " --- |" * len(splits)]
    for model, points in by_model.items():
        lines += [f"| {model} | {p['update']} | {p['layer']} | " + " | ".join(f"{p[s]:.3f}" for s in splits) + " |"
                  for p in points]
    return lines


def write_headline(folder: Path, result: dict, data: QualityData, scans: dict[int, dict | None]) -> Path:
    """quality/report.md and quality/quality.json (see the module docstring)."""
    by_model = curves(scans)
    extra = ([NO_SCAN] if len(result["headline"]) < 2 else []) + ([ON_VALID] if result["split"] == "valid" else [])
    lines = [""] + extra if extra else []
    if by_model:
        lines += curve_lines(by_model) + ["", f"![PNMI over training]({_plot(folder, by_model, result).name})"]
    lines += ["", "Each teacher in detail: [it1/report.md](it1/report.md), [it2/report.md](it2/report.md)."]
    title = (f"# Units and features against phones on the {result['split']} split "
             f"({result['utterances']} aligned utterances)")
    return write_quality(folder, result, data, title, lines, {"curves": by_model})


def _plot(folder: Path, by_model: dict, result: dict) -> Path:
    """PNMI of the layer best on valid against updates (iteration 2 after iteration 1), the first row dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    split, offset = result["split"], 0
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for model, points in by_model.items():
        ax.plot([offset + p["update"] for p in points], [p[split] for p in points], marker="o", label=model)
        offset += points[-1]["update"]
    first = result["headline"][0]
    ax.axhline(first["pnmi"], color="black", linestyle="--", label=first["name"])
    ax.set(xlabel="updates (iteration 2 after iteration 1)", ylabel=f"PNMI ({split})",
           title="best layer's PNMI over training")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = folder / CURVE_PLOT
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
