"""The rows of a quality report as Markdown: one table, the answer per measure, the budget.

Reads what `row_compare.compare_rows` returns (quality.json's "headline", "differences" and
"rises"), so `hubert quality` (one row) and a run's quality/report.md (one row per model)
print the same table.
"""
from __future__ import annotations

import json
from pathlib import Path

from .abx_items import write_item_file
from .path_checks import output_folder
from .quality_budget import QualityBudget
from .quality_report import QUALITY_JSON, REPORT
from .row_compare import MIN_UTTERANCES
from .row_quality import QualityData

LABELS = {"pnmi": "PNMI", "abx_within": "ABX within speaker", "abx_across": "ABX across speaker", "per": "PER"}
PERCENT = {"pnmi": False, "abx_within": True, "abx_across": True, "per": True}


def figure(value: float | None, ci: list | None, percent: bool) -> str:
    """"0.412 [0.398, 0.425]" or "11.6% [10.9, 12.4]"; "-" when not measured."""
    if value is None:
        return "-"
    if percent:
        low, high = (f"{100 * v:.1f}" if v is not None else "?" for v in ci or (None, None))
        return f"{100 * value:.1f}% [{low}, {high}]"
    low, high = (f"{v:.3f}" if v is not None else "?" for v in ci or (None, None))
    return f"{value:.3f} [{low}, {high}]"


def headline_table(result: dict) -> list[str]:
    """Markdown table: row, layer (chosen on valid), each measure with its 95% interval."""
    rows = result["headline"]
    measures = [m for m in LABELS if m != "abx_across" or any(r["abx_across"] is not None for r in rows)]
    lines = ["| row | layer (chosen on valid) | " + " | ".join(f"{LABELS[m]} [95%]" for m in measures) + " |",
             "| --- | --- |" + " --- |" * len(measures)]
    for row in rows:
        layer = "-" if row.get("layer") is None else \
            f"{row['layer']}" + (f" (update {row['update']})" if row.get("update") is not None else "")
        lines.append(f"| {row['name']} | {layer} | "
                     + " | ".join(figure(row[m], row[f"{m}_ci"], PERCENT[m]) for m in measures) + " |")
    return lines


def answer_lines(result: dict) -> list[str]:
    """One line per measure: does each row beat the one before it (oldest first)?"""
    if not result.get("differences"):
        return []
    names = [row["name"] for row in result["headline"]]
    question = " > ".join(reversed(names))
    lines = []
    for measure, answer in result["rises"].items():
        if answer is None:
            continue
        steps = [_step_text(step, measure) for step in result["differences"]]
        better = "higher" if measure == "pnmi" else "lower error"
        lines.append(f"- {LABELS[measure]} ({better} is better), {question}: **{answer}** ({'; '.join(steps)})")
    return lines


def _step_text(step: dict, measure: str) -> str:
    change = step[measure]
    scale, unit = (100, " points") if PERCENT[measure] else (1, "")
    low, high = ("?" if v is None else f"{scale * v:+.3g}" for v in change["ci"])
    return f"{step['from']} -> {step['to']}: {scale * change['difference']:+.3g}{unit} [{low}, {high}] {change['verdict']}"


def budget_lines(budget: QualityBudget, result: dict, speakers_known: bool) -> list[str]:
    """What every row got, in words, with the frames each row's k-means saw."""
    frames = ", ".join(f"{row['name']} {row['kmeans']['frames']}" for row in result["headline"])
    first = result["headline"][0]["kmeans"]
    return [
        f"Every row: k-means with {budget.num_units} units ({first['backend']}, seed {budget.seed}) on the same "
        f"{first['utterances']} train utterances ({first['seconds']:.0f} s of audio; frames: {frames}); labels at the "
        f"row's frame rate against 100 Hz phones; every one of the {result['utterances']} aligned utterances of "
        f"{result['split']}.",
        f"ABX: triphones, angular distance along DTW, at most {budget.abx_max_items} items per (phone, context, "
        f"speaker) and, across speaker, {budget.abx_max_x_speakers} X speakers per (A, B) group; averaged over "
        "contexts, then speakers, then phone pairs (fastabx's ZeroSpeech procedure)."
        + ("" if speakers_known else " Speakers unknown: 'within' pools every speaker, no across figure."),
        f"PER: a linear CTC head on frozen features, {budget.probe_steps} Adam steps (peak lr {budget.probe_lr:g}, "
        f"cosine) of {budget.probe_batch} crops of at most {budget.probe_crop_seconds:g} s from the same train "
        "utterances; greedy decoding; silence left out.",
        f"Intervals: 95% basic bootstrap, {budget.resamples} resamples of the report utterances, the same draws "
        "for every row and difference; it corrects PNMI's upward bias on few frames, so an interval may sit below "
        "its estimate. A step rises only when its difference's interval excludes zero. A measure resting on fewer "
        f"than {MIN_UTTERANCES} utterances gets no interval ([?, ?]) and no verdict.",
    ]


def abx_summary(data: QualityData, split: str, item_file: str) -> dict:
    """How many ABX items and cells every row was scored on, and where the item file is."""
    report = data.splits[split]
    return {"item_file": item_file, "items": len(report.items), "within_cells": len(report.within),
            "across_cells": None if report.across is None else len(report.across),
            "speakers_known": report.speakers_known}


def write_quality(out: Path, result: dict, data: QualityData, title: str, extra_lines: list[str] = (),
                  extra: dict | None = None) -> Path:
    """out/quality.json (the rows under "headline", "rises", the budget, the ABX items), out/report.md
    (`title`, the table, the answers, the budget, then `extra_lines`) and out/abx/SPLIT.item."""
    split = result["split"]
    item_file = write_item_file(output_folder(out / "abx") / f"{split}.item", data.splits[split].items)
    record = {**result, "budget": data.budget.as_dict(),
              "abx": abx_summary(data, split, str(item_file.relative_to(out))), **(extra or {})}
    (out / QUALITY_JSON).write_text(json.dumps(record, indent=2) + "\n")
    answers = answer_lines(result)
    lines = [title, ""] + headline_table(result) + ([""] + answers if answers else []) + [""] \
        + [f"- {line}" for line in budget_lines(data.budget, result, data.splits[split].speakers_known)] \
        + [f"- ABX items (fastabx's `.item` format, to cross-check with fastabx): {item_file.relative_to(out)}"] \
        + list(extra_lines)
    (out / REPORT).write_text("\n".join(lines) + "\n")
    return out / REPORT
