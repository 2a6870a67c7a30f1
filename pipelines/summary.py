"""The few lines a user reads at the end of `hubert run`: teachers, layers, training, exports."""
from __future__ import annotations

import json
from pathlib import Path

from clustering.row_report import LABELS, headline_table

from .run_config import PipelineConfig


def _history(train_dir: Path) -> list[dict]:
    path = train_dir / "train_log.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def summary(config: PipelineConfig) -> str:
    """A few lines a user reads at the end of a run."""
    work = Path(config.work_dir)
    lines = ["", "=== summary ==="]
    for number in (1, 2):
        quality = work / "quality" / f"it{number}" / "quality.json"
        teacher = "MFCC" if number == 1 else "iteration-1 layer"
        if quality.exists():
            q = json.loads(quality.read_text())
            if "phones" in q:
                lines.append(f"iteration {number} teacher ({teacher}, {q['usage']['num_units']} units): "
                             f"PNMI {q['phones']['pnmi']:.3f}, phone purity {q['phones']['phone_purity']:.3f}")
            if "agreement" in q:
                lines.append(f"  agreement with the iteration-1 teacher: NMI {q['agreement']['nmi']:.3f}")
            if "layer_pnmi" in q:
                lines.append(f"  iteration-{number} model, PNMI per layer: "
                             + ", ".join(f"{k}:{v:.3f}" for k, v in q["layer_pnmi"].items()))
        train = [r for r in _history(work / f"it{number}-train") if r["split"] == "train"]
        valid = [r for r in _history(work / f"it{number}-train") if r["split"] == "valid"]
        if train:
            lines.append(f"iteration {number} pretraining: masked accuracy {train[0]['masked_acc']:.3f} at update "
                         f"{train[0]['update']} -> {train[-1]['masked_acc']:.3f} at update {train[-1]['update']}"
                         + (f" (valid {valid[-1]['masked_acc']:.3f})" if valid else "")
                         + f", loss {train[0]['loss']:.2f} -> {train[-1]['loss']:.2f}")
    lines += _headline_lines(work / "quality")
    lines += [f"checkpoints: {work / 'it1-train' / 'checkpoints'}, {work / 'it2-train' / 'checkpoints'}"]
    return "\n".join(lines + _export_lines(work / "export"))


def _headline_lines(quality: Path) -> list[str]:
    """The run's answer (quality/quality.json): the table of rows on the report split (each model at
    its layer chosen on valid), the answer per measure, and the chosen layer over training."""
    path = quality / "quality.json"
    if not path.exists():
        return []
    result = json.loads(path.read_text())
    lines = [f"on {result['split']} ({result['utterances']} utterances), layers chosen on valid:"]
    lines += ["  " + line for line in headline_table(result)]
    if result["rises"]:
        question = " > ".join(row["name"] for row in reversed(result["headline"]))
        answers = ", ".join(f"{LABELS[m]} {a}" for m, a in result["rises"].items() if a is not None)
        lines.append(f"{question}? {answers} (report: {quality / 'report.md'})")
    else:
        lines.append(f"no model rows: the layer scans did not run (report: {quality / 'report.md'})")
    for model, points in result["curves"].items():
        if len(points) > 1:
            lines.append(f"  {model} over training (update: layer, PNMI): "
                         + ", ".join(f"{p['update']}: {p['layer']}, {p[result['split']]:.3f}" for p in points))
    return lines


def _export_lines(export: Path) -> list[str]:
    """Where the exports are, how to load one, and how to add the heads that were not exported."""
    made = [export / name for name in ("encoder", "ctc", "classification") if (export / name).is_dir()]
    lines = [f"Hugging Face exports: {', '.join(map(str, made))}", "load one with transformers:",
             "    from transformers import HubertModel",
             f"    model = HubertModel.from_pretrained({str(export / 'encoder')!r})",
             "    hidden = model(waveform_16k[None]).last_hidden_state"]
    checkpoint = export.parent / "it2-train" / "checkpoints" / "best.pt"
    if not (export / "ctc").is_dir():
        lines.append(f"no CTC head (no transcripts): add one with `hubert export {checkpoint} OUT --head ctc "
                     "--transcripts TRANSCRIPTS.tsv` (uid<TAB>text), or set export.transcripts")
    if not (export / "classification").is_dir():
        lines.append(f"no classification head: add one with `hubert export {checkpoint} OUT --head "
                     "classification --labels a,b,c`, or set export.labels")
    return lines
