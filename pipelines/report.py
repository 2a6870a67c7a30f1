"""The run's closing report: both teachers' quality, the iteration-1 layer scan, and a summary."""
from __future__ import annotations

import json
from pathlib import Path

from clustering.alignments import load_alignments
from clustering.labels import LabelInfo
from clustering.layer_scan import layer_scan
from clustering.manifest import read_manifest
from clustering.report import analyse_labels, write_report

from .config import PipelineConfig

def report_split(work: Path) -> str:
    """The held-out split (labelled by the training teachers), or train when valid is empty."""
    return "valid" if len(read_manifest(work / "data" / "valid.tsv")) else "train"


def alignments_path(config: PipelineConfig, split: str) -> Path | None:
    if config.alignments:
        return Path(config.alignments)
    built_in = Path(config.work_dir) / "data" / f"{split}.phn.tsv"
    return built_in if not config.audio_dir and built_in.exists() else None


def quality_stage(config: PipelineConfig, folder: Path) -> None:
    """quality/it1 and quality/it2 reports, it2 compared with it1, plus the it1 layer scan."""
    work = Path(config.work_dir)
    split = report_split(work)
    manifest = read_manifest(work / "data" / f"{split}.tsv")
    aligned = alignments_path(config, split)
    one, two = LabelInfo.load(work / "it1-labels"), LabelInfo.load(work / "it2-labels")
    first = analyse_labels(work / "it1-labels" / f"{split}.km", one.label_rate, one.num_units, manifest, aligned)
    scores = None
    if config.scan_checkpoints and aligned is not None:
        from pretrain.checkpoint import checkpoint_paths, checkpoint_update

        first["layer_pnmi_by_update"] = {
            checkpoint_update(path): scan_checkpoint(work, manifest, aligned, config, path)
            for path in checkpoint_paths(work / "it1-train" / "checkpoints")}
    if config.scan_layers and aligned is not None:
        # the newest checkpoint is the last one scanned over training: no need to scan it twice
        by_update = first.get("layer_pnmi_by_update")
        scores = by_update[max(by_update)] if by_update else scan_checkpoint(work, manifest, aligned, config)
    write_report(first, folder / "it1", scores)
    second = analyse_labels(work / "it2-labels" / f"{split}.km", two.label_rate, two.num_units, manifest, aligned,
                            compare=(work / "it1-labels" / f"{split}.km", one.label_rate))
    write_report(second, folder / "it2")


def scan_checkpoint(work: Path, manifest, aligned: Path, config: PipelineConfig,
                    checkpoint: Path | None = None) -> dict[int, float]:
    """PNMI per layer of the iteration-1 model (its newest checkpoint unless one is given):
    k-means fitted on train utterances, scored on `manifest`'s, like the MFCC teacher."""
    from pretrain.checkpoint import latest_path
    from pretrain.layers import LayerFeatures
    from pretrain.model_io import load_encoder

    encoder = load_encoder(checkpoint or latest_path(work / "it1-train" / "checkpoints"))
    features = LayerFeatures(encoder, 1)
    layers = list(range(1, encoder.config.num_hidden_layers + 1))
    uids = [manifest.utterance_id(i) for i in range(len(manifest))]
    return layer_scan(read_manifest(work / "data" / "train.tsv"), manifest, load_alignments(aligned, uids),
                      features.layers, layers,
                      num_units=config.iteration2.num_units, seed=config.seed)


def _history(train_dir: Path) -> list[dict]:
    path = train_dir / "train_log.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _best_layer(scores: dict[str, float]) -> tuple[str, float]:
    """(layer, PNMI) of the layer with the highest PNMI."""
    return max(scores.items(), key=lambda kv: kv[1])


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
                layer, pnmi = _best_layer(q["layer_pnmi"])
                lines.append(f"  iteration-1 model, best layer {layer}: PNMI {pnmi:.3f} "
                             f"(per layer: {', '.join(f'{k}:{v:.2f}' for k, v in q['layer_pnmi'].items())})")
            if "layer_pnmi_by_update" in q:
                bests = {update: _best_layer(scores) for update, scores in q["layer_pnmi_by_update"].items()}
                lines.append("  best layer over training (update: PNMI, layer): "
                             + ", ".join(f"{u}: {v:.3f} ({k})" for u, (k, v) in bests.items()))
        train = [r for r in _history(work / f"it{number}-train") if r["split"] == "train"]
        valid = [r for r in _history(work / f"it{number}-train") if r["split"] == "valid"]
        if train:
            lines.append(f"iteration {number} pretraining: masked accuracy {train[0]['masked_acc']:.3f} at update "
                         f"{train[0]['update']} -> {train[-1]['masked_acc']:.3f} at update {train[-1]['update']}"
                         + (f" (valid {valid[-1]['masked_acc']:.3f})" if valid else "")
                         + f", loss {train[0]['loss']:.2f} -> {train[-1]['loss']:.2f}")
    export = work / "export"
    lines += [f"checkpoints: {work / 'it1-train' / 'checkpoints'}, {work / 'it2-train' / 'checkpoints'}",
              f"Hugging Face exports: {export / 'encoder'}, {export / 'ctc'}, {export / 'classification'}",
              "load one with transformers:",
              "    from transformers import HubertModel",
              f"    model = HubertModel.from_pretrained({str(export / 'encoder')!r})",
              "    hidden = model(waveform_16k[None]).last_hidden_state"]
    return "\n".join(lines)
