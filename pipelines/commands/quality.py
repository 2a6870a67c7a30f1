"""`hubert quality`: phone purity, cluster purity, PNMI, unit usage and teacher agreement."""
from __future__ import annotations

from pathlib import Path

from clustering.manifest import read_manifest
from clustering.ownership import claim
from clustering.quality_report import analyse_labels, label_source, write_report

from . import add_command


def add_parser(subparsers) -> None:
    p = add_command(subparsers, "quality",
                    "Measure how good a set of units is: phone purity, cluster purity and PNMI against "
                    "phone alignments (fairseq tsv, TextGrid or .lab), unit usage, and agreement with "
                    "another teacher. Writes quality.json, report.md and PNG plots.",
                    "hubert quality --labels work/it1-labels --manifest data/corpus/valid.tsv "
                    "--alignments data/corpus/valid.phn.tsv --out work/quality-mfcc")
    p.add_argument("--labels", required=True, help="label folder (SPLIT.km + labels.json) or a .km file")
    p.add_argument("--manifest", required=True, help="manifest the labels follow, line for line")
    p.add_argument("--alignments", help="fairseq frame-level tsv, or a folder of .TextGrid / .lab files")
    p.add_argument("--alignment-format", choices=("tsv", "textgrid", "htk", "xwaves", "lab"),
                   help="default: read from each file; lab = HTK or Xwaves, read from the content")
    p.add_argument("--label-rate", type=float, help="Hz (default: from labels.json)")
    p.add_argument("--num-units", type=int, help="default: from labels.json")
    p.add_argument("--compare", help="another teacher's label folder or .km file for the same utterances")
    p.add_argument("--out", required=True)
    p.set_defaults(func=run)


def run(args) -> int:
    out_dir = claim(args.out, "quality", "--out")
    manifest = read_manifest(args.manifest)
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
