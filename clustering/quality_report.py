"""Write a teacher's quality report: quality.json, report.md and PNG plots."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .alignments import load_alignments
from .labels import LabelInfo, check_comparable, check_labels, read_labels
from .manifest import Manifest
from .path_checks import input_file, output_folder
from .quality import joint_counts, pair_frames, purity_pnmi, teacher_agreement, unit_usage


QUALITY_JSON, REPORT = "quality.json", "report.md"  # what write_report writes, besides its plots


def analyse_labels(label_file: str | Path, label_rate: float, num_units: int, manifest: Manifest,
                   alignments: str | Path | None = None, alignment_format: str | None = None,
                   compare: tuple[str | Path, float] | None = None) -> dict:
    """All metrics for one label file; `compare` = (other label file, its rate) adds agreement.

    Everything is checked before anything is computed: the labels against `manifest` (one
    line per utterance, lengths, ids < num_units), the compared labels against these, and
    that the alignments exist. Raises LabelError or FileNotFoundError naming the file.
    """
    rows = read_labels(label_file)
    check_labels(label_file, rows, manifest, label_rate, num_units)
    other = None
    if compare:
        other = read_labels(compare[0])
        check_comparable(label_file, rows, label_rate, compare[0], other, compare[1])
    if alignments and not Path(alignments).exists():
        raise FileNotFoundError(f"{alignments}: alignments not found; give a frame-level .tsv or a folder "
                                "of .TextGrid / .lab files")
    result = {"labels": str(label_file), "label_rate": label_rate, "utterances": len(rows),
              "usage": unit_usage(rows, num_units)}
    if alignments:
        result.update(_phone_metrics(rows, label_file, label_rate, num_units, manifest, alignments, alignment_format))
    if compare:
        result["agreement"] = {"with": str(compare[0]), **teacher_agreement(rows, label_rate, other, compare[1])}
    return result


def _phone_metrics(rows: list[np.ndarray], label_file, label_rate: float, num_units: int, manifest: Manifest,
                   alignments, alignment_format: str | None) -> dict:
    """{"phones": purity and PNMI, "_counts": (phones, units) frame counts} against the alignments."""
    uids = [manifest.utterance_id(i) for i in range(len(manifest))]
    paired = pair_frames(rows, label_rate, manifest, load_alignments(alignments, uids, alignment_format))
    if paired.utterances == 0:
        raise ValueError(f"{alignments}: no utterance of {label_file} has an alignment; check the uids "
                         f"(e.g. {uids[0]!r})")
    counts = joint_counts(paired.phones, paired.units, len(paired.phone_names), num_units)
    phones = {**purity_pnmi(counts), "frames": int(counts.sum()), "aligned_utterances": paired.utterances,
              "missing_alignment": len(paired.missing_alignment), "missing_labels": paired.missing_labels,
              "phone_names": paired.phone_names}
    return {"phones": phones, "_counts": counts}


def label_source(path: str | Path, split: str, manifest: Manifest) -> tuple[Path, LabelInfo | None]:
    """A label folder (with labels.json) or a single .km file: (the `split` label file, its info).

    A .km file's info is the labels.json of its folder when there is one (None otherwise). The
    labels.json must list as many utterances of the split (`split`, or the .km file's name) as
    `manifest` has.
    """
    path = Path(path)
    if not path.is_dir():
        path = input_file(path, "label file")
        if not (path.parent / "labels.json").is_file():
            return path, None
        folder, split = path.parent, path.stem
    else:
        folder, path = path, path / f"{split}.km"
    info = LabelInfo.load(folder)
    info.check_lines(folder / "labels.json", split, len(manifest))
    return path, info


def write_report(result: dict, out_dir: str | Path, layer_scores: dict[int, float] | None = None) -> Path:
    """quality.json, report.md, and plots (phone_given_unit.png, unit_usage.png, pnmi_per_layer.png)."""
    out = output_folder(out_dir)
    counts = result.pop("_counts", None)
    if layer_scores:
        result["layer_pnmi"] = {str(k): v for k, v in layer_scores.items()}
    (out / QUALITY_JSON).write_text(json.dumps(result, indent=2) + "\n")
    plots = _plots(out, result, counts, layer_scores)
    lines = [f"# Unit quality: {result['labels']}", "", f"- utterances: {result['utterances']}",
             f"- label rate: {result['label_rate']:g} Hz"]
    usage = result["usage"]
    lines += [f"- units: {usage['num_units']} ({usage['dead_units']} never used), usage perplexity "
              f"{usage['usage_perplexity']:.1f}, mean segment {usage['mean_segment_frames']:.2f} frames"]
    if "phones" in result:
        ph = result["phones"]
        lines += ["", "| phone purity | cluster purity | PNMI | aligned frames |", "| --- | --- | --- | --- |",
                  f"| {ph['phone_purity']:.3f} | {ph['cluster_purity']:.3f} | {ph['pnmi']:.3f} | {ph['frames']} |",
                  "", f"Utterances without alignment: {ph['missing_alignment']}; alignments without labels: "
                  f"{ph['missing_labels']}."]
    if "agreement" in result:
        ag = result["agreement"]
        lines += ["", f"Agreement with {ag['with']}: NMI {ag['nmi']:.3f}, V-measure {ag['v_measure']:.3f}"]
    if layer_scores:
        lines += ["", "| layer | PNMI |", "| --- | --- |"] + [f"| {k} | {v:.3f} |" for k, v in layer_scores.items()]
    lines += _by_update_table(result.get("layer_pnmi_by_update"))
    lines += [""] + [f"![{p.stem}]({p.name})" for p in plots]
    (out / REPORT).write_text("\n".join(lines) + "\n")
    return out


def _plots(out: Path, result: dict, counts: np.ndarray | None, layer_scores) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    fig, ax = plt.subplots(figsize=(8, 3))
    ax.bar(np.arange(result["usage"]["num_units"]), result["usage"]["unit_counts"], width=1.0)
    ax.set(xlabel="unit", ylabel="frames", title="unit usage")
    paths.append(_save(fig, out / "unit_usage.png"))
    if counts is not None:
        names = result["phones"]["phone_names"]
        given_unit = counts / np.maximum(counts.sum(0, keepdims=True), 1)
        order = np.lexsort((-given_unit.max(0), given_unit.argmax(0)))  # units grouped by likeliest phone
        fig, ax = plt.subplots(figsize=(10, max(3, len(names) * 0.18)))
        ax.imshow(given_unit[:, order], aspect="auto", interpolation="nearest", cmap="viridis")
        ax.set_yticks(range(len(names)), names, fontsize=6)
        ax.set(xlabel="unit (ordered by most likely phone)", title="p(phone | unit)")
        paths.append(_save(fig, out / "phone_given_unit.png"))
    if layer_scores:
        fig, ax = plt.subplots(figsize=(5, 3))
        ax.plot(list(layer_scores), list(layer_scores.values()), marker="o")
        ax.set(xlabel="layer", ylabel="PNMI", title="PNMI per layer")
        paths.append(_save(fig, out / "pnmi_per_layer.png"))
    if result.get("layer_pnmi_by_update"):
        paths.append(_plot_by_update(out / "pnmi_by_update.png", result))
    return paths


def _by_update_table(by_update: dict | None) -> list[str]:
    """Markdown rows: PNMI of every layer at every scanned update."""
    if not by_update:
        return []
    layers = list(next(iter(by_update.values())))
    return (["", "PNMI per layer over training:", "", "| update | " + " | ".join(f"layer {k}" for k in layers) + " |",
             "| --- |" + " --- |" * len(layers)]
            + [f"| {update} | " + " | ".join(f"{scores[k]:.3f}" for k in layers) + " |"
               for update, scores in by_update.items()])


def _plot_by_update(path: Path, result: dict) -> Path:
    """One line per layer: PNMI against update, the teacher's PNMI as a dashed line."""
    import matplotlib.pyplot as plt

    by_update = result["layer_pnmi_by_update"]
    updates = [int(u) for u in by_update]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for layer in next(iter(by_update.values())):
        ax.plot(updates, [scores[layer] for scores in by_update.values()], marker="o", label=f"layer {layer}")
    if "phones" in result:
        ax.axhline(result["phones"]["pnmi"], color="black", linestyle="--", label="teacher")
    ax.set(xlabel="update", ylabel="PNMI", title="PNMI per layer during training")
    ax.legend(fontsize=7, ncol=2)
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
