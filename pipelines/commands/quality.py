"""`hubert quality`: how good a set of units, or a kind of features, is against phones.

Two modes:
- `--labels DIR_OR_KM`: a teacher's labels: phone purity, cluster purity, PNMI, unit usage and
  agreement with another teacher.
- `--features mfcc` or `--model CKPT_OR_HF_DIR --layer N`: one row measured as a run's report
  measures each of its rows (clustering/row_quality.py): k-means on `--fit-manifest` (the same
  budget as every row of a run), PNMI, triphone ABX and a phone probe on `--manifest`, with 95%
  intervals.
"""
from __future__ import annotations

from pathlib import Path

from clustering.alignments import load_alignments
from clustering.audio import FRAME_RATE, MFCC_RATE
from clustering.features import mfcc_features
from clustering.manifest import Manifest, read_manifest
from clustering.ownership import claim
from clustering.quality_budget import QualityBudget
from clustering.quality_report import analyse_labels, label_source, write_report
from clustering.speakers import find_speakers

from . import add_command

ALIGNMENT_FORMATS = ("tsv", "textgrid", "htk", "xwaves", "lab")


def add_parser(subparsers) -> None:
    p = add_command(subparsers, "quality",
                    "Measure how good units or features are against phone alignments (fairseq tsv, TextGrid or "
                    ".lab). With --labels: phone purity, cluster purity, PNMI, unit usage, agreement with another "
                    "teacher. With --features mfcc or --model and --layer: PNMI (k-means fitted on --fit-manifest), "
                    "triphone ABX and a phone-recognition probe, with bootstrap intervals, as a run's report measures "
                    "each row. Writes quality.json, report.md (and plots, or an ABX .item file).",
                    "hubert quality --features mfcc --manifest work/data/valid.tsv --fit-manifest "
                    "work/data/train.tsv --alignments work/data/valid.phn.tsv --fit-alignments "
                    "work/data/train.phn.tsv --speakers work/data/speakers.tsv --out work/quality-mfcc")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--labels", help="label folder (SPLIT.km + labels.json) or a .km file")
    what.add_argument("--features", choices=("mfcc",), help="measure MFCC features (39 x 100 Hz)")
    what.add_argument("--model", help="measure a layer of this checkpoint (.pt) or Hugging Face HuBERT folder")
    p.add_argument("--layer", type=int, help="with --model: the transformer layer (1-based)")
    p.add_argument("--manifest", required=True, help="manifest of the utterances to score")
    p.add_argument("--alignments", help="fairseq frame-level tsv, or a folder of .TextGrid / .lab files")
    p.add_argument("--alignment-format", choices=ALIGNMENT_FORMATS,
                   help="default: read from each file; lab = HTK or Xwaves, read from the content")
    p.add_argument("--label-rate", type=float, help="with --labels: Hz (default: from labels.json)")
    p.add_argument("--num-units", type=int, help="k-means units (default: from labels.json; 100 for features)")
    p.add_argument("--compare", help="with --labels: another teacher's label folder or .km file")
    p.add_argument("--fit-manifest", help="with --features/--model: the train utterances k-means and the probe "
                                          "fit on (as much audio as the budget's fit_seconds)")
    p.add_argument("--fit-alignments", help="alignments of the fit utterances, for the phone probe "
                                            "(default: --alignments; without any, no probe)")
    p.add_argument("--speakers", help="uid<TAB>speaker file (the built-in corpus writes speakers.tsv)")
    p.add_argument("--speaker-folder", type=int, default=0,
                   help="the N-th folder of each utterance path names its speaker (LibriSpeech: 1)")
    p.add_argument("--seed", type=int, default=0, help="fit utterances, k-means, ABX subsampling, probe, bootstrap")
    p.add_argument("--device", default="auto", help="with --model: auto (the GPU when present), cpu or cuda")
    p.add_argument("--out", required=True)
    p.set_defaults(func=run)


def run(args) -> int:
    out_dir = claim(args.out, "quality", "--out")
    manifest = read_manifest(args.manifest)
    if args.labels:
        return _labels(args, manifest, out_dir)
    return _features(args, manifest, out_dir)


def _labels(args, manifest: Manifest, out_dir: Path) -> int:
    split = Path(args.manifest).stem
    label_file, info = label_source(args.labels, split, manifest)
    rate = args.label_rate or (info.label_rate if info else None)
    units = args.num_units or (info.num_units if info else None)
    if rate is None or units is None:
        raise ValueError(f"{args.labels}: no labels.json; pass --label-rate and --num-units")
    compare = None
    if args.compare:
        other_file, other_info = label_source(args.compare, split, manifest)
        compare = (other_file, other_info.label_rate if other_info else rate)
    result = analyse_labels(label_file, rate, units, manifest, args.alignments, args.alignment_format, compare)
    out = write_report(result, out_dir)
    if "phones" in result:
        ph = result["phones"]
        print(f"phone purity {ph['phone_purity']:.3f}, cluster purity {ph['cluster_purity']:.3f}, "
              f"PNMI {ph['pnmi']:.3f} over {ph['frames']} frames")
    print(f"wrote {out}/report.md")
    return 0


def _features(args, manifest: Manifest, out_dir: Path) -> int:
    # torch loads here, not when the CLI is imported: every process the built-in corpus synthesis
    # starts imports the CLI again (multiprocessing re-imports the main module)
    from clustering.row_compare import measure_rows
    from clustering.row_quality import quality_data
    from clustering.row_report import headline_table, write_quality

    for option, needed in (("--fit-manifest", args.fit_manifest), ("--alignments", args.alignments)):
        if not needed:
            raise ValueError(f"{option} is needed with --features or --model (e.g. {option} "
                             f"{'work/data/train.tsv' if option == '--fit-manifest' else 'work/data/valid.phn.tsv'})")
    if args.model and args.layer is None:
        raise ValueError("--model needs --layer N (1-based), e.g. --layer 6")
    fit = read_manifest(args.fit_manifest)
    uids = [m.utterance_id(i) for m in (manifest, fit) for i in range(len(m))]
    alignments = load_alignments(args.fit_alignments or args.alignments, uids, args.alignment_format)
    if args.fit_alignments:
        alignments.update(load_alignments(args.alignments, uids, args.alignment_format))
    split = Path(args.manifest).stem
    budget = QualityBudget(num_units=args.num_units or QualityBudget.num_units, seed=args.seed)
    data = quality_data(fit, {split: manifest}, alignments, find_speakers(uids, args.speakers, args.speaker_folder),
                        budget)
    result = measure_rows([_row(args)], data, split)
    report = write_quality(out_dir, result, data, f"# {result['headline'][0]['name']} on {split} "
                                                   f"({result['utterances']} aligned utterances)")
    print("\n".join(headline_table(result)))
    print(f"wrote {report}")
    return 0


def _row(args) -> "RowSpec":
    """MFCC, or a layer of a checkpoint / Hugging Face folder (50 Hz)."""
    from clustering.row_compare import RowSpec

    if args.features == "mfcc":
        return RowSpec("MFCC", mfcc_features, MFCC_RATE)
    from pretrain.layer_features import LayerFeatures
    from pretrain.model_io import load_encoder

    features = LayerFeatures(load_encoder(args.model), args.layer, device=args.device)
    return RowSpec(f"{Path(args.model).name} layer {args.layer}", features, FRAME_RATE, {"layer": args.layer})
