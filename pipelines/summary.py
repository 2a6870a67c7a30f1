"""The few lines a user reads at the end of `hubert run`: teachers, layers, training, exports."""
from __future__ import annotations

import json
from pathlib import Path

from clustering.row_report import LABELS, headline_table

from .layout import WorkLayout
from .stages import DONE, describe_extension, read_record


def _history(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def summary(work_dir: str | Path) -> str:
    """A few lines a user reads at the end of a run in `work_dir`."""
    layout = WorkLayout(Path(work_dir))
    lines = ["", "=== summary ==="]
    for number in (1, 2):
        lines += _teacher_lines(layout, number) + _training_lines(layout, number)
    lines += _headline_lines(layout)
    lines += [f"checkpoints: {layout.checkpoints(1)}, {layout.checkpoints(2)}"]
    return "\n".join(lines + _export_lines(layout))


def _teacher_lines(layout: WorkLayout, number: int) -> list[str]:
    path = layout.teacher_quality(number)
    if not path.exists():
        return []
    q, lines = json.loads(path.read_text()), []
    teacher = "MFCC" if number == 1 else "iteration-1 layer"
    if "phones" in q:
        lines.append(f"iteration {number} teacher ({teacher}, {q['usage']['num_units']} units): "
                     f"PNMI {q['phones']['pnmi']:.3f}, phone purity {q['phones']['phone_purity']:.3f}")
    if "agreement" in q:
        lines.append(f"  agreement with the iteration-1 teacher: NMI {q['agreement']['nmi']:.3f}")
    if "layer_pnmi" in q:
        lines.append(f"  iteration-{number} model, PNMI per layer: "
                     + ", ".join(f"{k}:{v:.3f}" for k, v in q["layer_pnmi"].items()))
    return lines


def _training_lines(layout: WorkLayout, number: int) -> list[str]:
    """Masked accuracy and loss from first to last log, and what the run continued, if anything."""
    history = _history(layout.train_log(number))
    train = [r for r in history if r["split"] == "train"]
    valid = [r for r in history if r["split"] == "valid"]
    if not train:
        return []
    lines = [f"iteration {number} pretraining: masked accuracy {train[0]['masked_acc']:.3f} at update "
             f"{train[0]['update']} -> {train[-1]['masked_acc']:.3f} at update {train[-1]['update']}"
             + (f" (valid {valid[-1]['masked_acc']:.3f})" if valid else "")
             + f", loss {train[0]['loss']:.2f} -> {train[-1]['loss']:.2f}"]
    lineage = (read_record(layout.training(number) / DONE) or {}).get("extended_from")
    if lineage:
        lines.append(f"  extended: it continues a finished run of {describe_extension(lineage)} (its learning rate "
                     "had decayed); a fresh run with this schedule would differ")
    return lines


def _headline_lines(layout: WorkLayout) -> list[str]:
    """The run's answer (quality/quality.json): the table of rows on the report split (each model at
    its layer chosen on valid), the answer per measure, and the chosen layer over training."""
    path = layout.quality_record()
    if not path.exists():
        return []
    result = json.loads(path.read_text())
    lines = [f"on {result['split']} ({result['utterances']} utterances), layers chosen on valid:"]
    lines += ["  " + line for line in headline_table(result)]
    if result["rises"]:
        question = " > ".join(row["name"] for row in reversed(result["headline"]))
        answers = ", ".join(f"{LABELS[m]} {a}" for m, a in result["rises"].items() if a is not None)
        lines.append(f"{question}? {answers} (report: {layout.report()})")
    else:
        lines.append(f"no model rows: the layer scans did not run (report: {layout.report()})")
    for model, points in result["curves"].items():
        if len(points) > 1:
            lines.append(f"  {model} over training (update: layer, PNMI): "
                         + ", ".join(f"{p['update']}: {p['layer']}, {p[result['split']]:.3f}" for p in points))
    return lines


def _export_lines(layout: WorkLayout) -> list[str]:
    """Where the exports are, how to load one, and how to add the heads that were not exported (from
    the checkpoint the exports were made from: the newest readable one)."""
    from pretrain.checkpoint import latest_path

    made = [layout.export(head) for head in ("encoder", "ctc", "classification") if layout.export(head).is_dir()]
    lines = [f"Hugging Face exports: {', '.join(map(str, made))}", "load one with transformers:",
             "    from transformers import HubertModel",
             f"    model = HubertModel.from_pretrained({str(layout.export('encoder'))!r})",
             "    hidden = model(waveform_16k[None]).last_hidden_state"]
    checkpoint = latest_path(layout.checkpoints(2)) or layout.checkpoints(2)
    if not layout.export("ctc").is_dir():
        lines.append(f"no CTC head (no transcripts): add one with `hubert export {checkpoint} OUT --head ctc "
                     "--transcripts TRANSCRIPTS.tsv` (uid<TAB>text), or set export.transcripts")
    if not layout.export("classification").is_dir():
        lines.append(f"no classification head: add one with `hubert export {checkpoint} OUT --head "
                     "classification --labels a,b,c`, or set export.labels")
    return lines
