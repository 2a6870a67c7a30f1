"""`hubert labels`: units for every utterance of one or more splits, from dumped features."""
from __future__ import annotations

from clustering.assign import assign_all, finish_label_dir, merge_label_shards, shard_label_path
from clustering.kmeans import KMeansTeacher
from clustering.labels import write_labels
from clustering.manifest import read_manifest
from clustering.paths import input_folder, output_folder
from clustering.shards import FeatureShards

from . import add_command, csv_list


def add_parser(subparsers) -> None:
    p = add_command(subparsers, "labels",
                    "Label every split with ONE teacher (the one fitted on train, so valid never gets "
                    "its own k-means); writes SPLIT.km, dict.km.txt and labels.json, all checked "
                    "against the manifests.",
                    "hubert labels work/manifest work/mfcc work/km100.npy work/labels100 --splits train,valid --label-rate 100")
    p.add_argument("manifest_dir", help="folder with SPLIT.tsv manifests")
    p.add_argument("feature_dir")
    p.add_argument("teacher", help="k-means teacher (.npy, or fairseq joblib with --trust-pickle)")
    p.add_argument("out_dir")
    p.add_argument("--splits", type=csv_list, default=("train", "valid"))
    p.add_argument("--label-rate", type=float, default=100.0, help="Hz: 100 for MFCC, 50 for layer features")
    p.add_argument("--nshard", type=int, default=1, help="shards the features were dumped in")
    p.add_argument("--rank", type=int, default=None,
                   help="label only this feature shard (SPLIT_RANK_NSHARD.km); then run once with --merge")
    p.add_argument("--merge", action="store_true", help="merge the shard label files and write labels.json")
    p.add_argument("--trust-pickle", action="store_true", help="allow loading a joblib/pickle teacher")
    p.set_defaults(func=run)


def run(args) -> int:
    manifest_dir = input_folder(args.manifest_dir, "manifest folder")
    if not args.merge:
        input_folder(args.feature_dir, "feature folder")
    teacher = KMeansTeacher.load(args.teacher, trust_pickle=args.trust_pickle)
    out = output_folder(args.out_dir)
    manifests = {s: read_manifest(manifest_dir / f"{s}.tsv") for s in args.splits}
    for split, manifest in manifests.items():
        if args.rank is not None:  # one shard of a sharded job
            shard = FeatureShards.single(args.feature_dir, split, args.rank, args.nshard)
            write_labels(shard_label_path(out, split, args.rank, args.nshard),
                         assign_all(shard, teacher, len(shard), desc=f"labels {split} {args.rank}"))
        elif args.merge:
            merge_label_shards(out, split, args.nshard, manifest)
        else:
            shards = FeatureShards(args.feature_dir, split, args.nshard)
            write_labels(out / f"{split}.km", assign_all(shards, teacher, len(shards), desc=f"labels {split}"))
    if args.rank is not None:
        print(f"wrote shard {args.rank}/{args.nshard}; run again with --merge when all shards are done")
        return 0
    info = finish_label_dir(out, args.teacher, teacher, args.label_rate, str(args.feature_dir), manifests)
    print(f"wrote {out}: {info.num_units} units at {info.label_rate:g} Hz, lines {info.lines}")
    return 0
