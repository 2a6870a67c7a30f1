"""The headline of a run's report: does each iteration give better units than the one before?

quality/report.md opens with three PNMI figures on the report split: the MFCC teacher's, the
iteration-1 model's and the iteration-2 model's (each model's layer chosen on valid at its
newest checkpoint), and whether they rise in that order. Then the curve over training: at
every scanned checkpoint, the layer best on valid and its PNMI, as a table and as
pnmi_over_training.png. quality/headline.json holds the same numbers.
"""
from __future__ import annotations

import json
from pathlib import Path

from clustering.quality_report import REPORT

HEADLINE = "headline.json"
CURVE_PLOT = "pnmi_over_training.png"


def headline(split: str, results: dict[int, dict], scans: dict[int, dict | None], teacher: str = "MFCC") -> dict:
    """{"rows": [iteration-1 teacher, iteration-1 model, iteration-2 model], "rising": bool, "curves": ...}."""
    rows = [{"name": f"{teacher} teacher", "units": results[1]["usage"]["num_units"], "pnmi": results[1]["phones"]["pnmi"]}]
    curves = {}
    for number in (1, 2):
        scan = scans[number]
        if scan is None:
            continue
        chosen = scan["chosen"]
        rows.append({"name": f"iteration-{number} model", "units": scan["units"], "layer": chosen["layer"],
                     "update": chosen["update"], "pnmi": chosen[split]})
        curves[f"it{number}"] = [{"update": update, **_best_on_valid(scores)}
                                 for update, scores in sorted(scan["by_update"].items())]
    rising = len(rows) == 3 and rows[0]["pnmi"] < rows[1]["pnmi"] < rows[2]["pnmi"]
    return {"split": split, "rows": rows, "rising": rising, "curves": curves}


def _best_on_valid(scores: dict[str, dict[int, float]]) -> dict:
    """The layer with the highest valid PNMI and its PNMI on every scored split."""
    layer = max(scores["valid"], key=scores["valid"].get)
    return {"layer": layer, **{split: by_layer[layer] for split, by_layer in scores.items()}}


def headline_lines(result: dict, utterances: int) -> list[str]:
    """The report's first lines: the three figures and the answer."""
    split = result["split"]
    lines = [f"# Units against phones: PNMI on the {split} split ({utterances} utterances)", "",
             "| teacher or model | units | layer (chosen on valid) | PNMI |", "| --- | --- | --- | --- |"]
    for row in result["rows"]:
        layer = f"{row['layer']} (update {row['update']})" if "layer" in row else "-"
        lines.append(f"| {row['name']} | {row['units']} | {layer} | {row['pnmi']:.3f} |")
    lines += ["", _answer(result)]
    if split == "valid":
        lines.append("Layers were chosen on the split they are scored on: there is no test split, or it is "
                     "empty; set (or raise) test_percent for a second held-out split to report on.")
    return lines


def _answer(result: dict) -> str:
    rows = result["rows"]
    if len(rows) < 3:
        return "No answer: the layer scans did not run (scan_layers = false)."
    figures = ", ".join(f"{row['name']} {row['pnmi']:.3f}" for row in rows)
    verdict = "yes" if result["rising"] else "no"
    return f"Iteration 2 > iteration 1 > {rows[0]['name']}: **{verdict}** ({figures})."


def curve_lines(result: dict) -> list[str]:
    """Markdown table: per model and scanned update, the layer best on valid and its PNMI per split."""
    splits = [s for s in ("valid", "test") if any(s in p for c in result["curves"].values() for p in c)]
    lines = ["", "Over training (the layer best on valid at each checkpoint):", "",
             "| model | update | layer | " + " | ".join(f"PNMI {s}" for s in splits) + " |",
             "| --- | --- | --- |" + " --- |" * len(splits)]
    for model, points in result["curves"].items():
        lines += [f"| {model} | {p['update']} | {p['layer']} | " + " | ".join(f"{p[s]:.3f}" for s in splits) + " |"
                  for p in points]
    return lines


def write_headline(folder: Path, split: str, utterances: int, results: dict[int, dict],
                   scans: dict[int, dict | None], teacher: str = "MFCC") -> dict:
    """quality/report.md (headline, curves, plot) and quality/headline.json; `teacher` names
    iteration 1's teacher features."""
    result = headline(split, results, scans, teacher)
    (folder / HEADLINE).write_text(json.dumps(result, indent=2) + "\n")
    lines = headline_lines(result, utterances)
    if result["curves"]:
        lines += curve_lines(result) + ["", f"![PNMI over training]({_plot(folder, result).name})"]
    lines += ["", "Each teacher in detail: [it1/report.md](it1/report.md), [it2/report.md](it2/report.md)."]
    (folder / REPORT).write_text("\n".join(lines) + "\n")
    return result


def _plot(folder: Path, result: dict) -> Path:
    """PNMI of the layer best on valid against updates (iteration 2 after iteration 1), MFCC dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    split, offset = result["split"], 0
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for model, points in result["curves"].items():
        ax.plot([offset + p["update"] for p in points], [p[split] for p in points], marker="o", label=model)
        offset += points[-1]["update"]
    ax.axhline(result["rows"][0]["pnmi"], color="black", linestyle="--", label=result["rows"][0]["name"])
    ax.set(xlabel="updates (iteration 2 after iteration 1)", ylabel=f"PNMI ({split})",
           title="best layer's PNMI over training")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = folder / CURVE_PLOT
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
