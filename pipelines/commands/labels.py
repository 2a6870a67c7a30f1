"""`hubert labels`: units for every utterance of one or more splits, from dumped features or from audio."""
from __future__ import annotations

from clustering.assign import assign_all, finish_label_dir, label_audio, merge_label_shards, shard_label_path
from clustering.audio import FRAME_RATE, MFCC_RATE
from clustering.kmeans import KMeansTeacher
from clustering.labels import write_labels
from clustering.manifest import read_manifest
from clustering.ownership import claim
from clustering.path_checks import input_folder
from clustering.feature_shards import FeatureShards

from . import add_command, csv_list
from .features import add_model_arguments, model_features, wants_model

USAGE = ("hubert labels MANIFEST_DIR FEATURE_DIR TEACHER OUT_DIR [options]\n"
         "       hubert labels MANIFEST_DIR TEACHER OUT_DIR --model MODEL --layer N [options]")


def add_parser(subparsers) -> None:
    p = add_command(subparsers, "labels",
                    "Label every split with ONE teacher (the one fitted on train, so valid never gets "
                    "its own k-means); writes SPLIT.km, dict.km.txt and labels.json, all checked "
                    "against the manifests. Labels come from dumped features (FEATURE_DIR), or straight "
                    "from the audio through layer N of a model (--model, --layer; nothing dumped, on the "
                    "GPU when one is present). Shard with --rank/--nshard, then run once more with --merge.",
                    "hubert labels work/manifest work/mfcc work/km100.npy work/labels100 --splits train,valid "
                    "--label-rate 100\n"
                    "hubert labels work/manifest work/km500.npy work/labels500 --model work/it1.pt --layer 6\n"
                    "hubert labels work/manifest work/km500.npy work/labels500 --model work/it1.pt --layer 6 "
                    "--rank 0 --nshard 8   # one of 8 workers\n"
                    "hubert labels work/manifest work/km500.npy work/labels500 --model work/it1.pt --layer 6 "
                    "--nshard 8 --merge")
    p.usage = USAGE
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="MANIFEST_DIR (SPLIT.tsv manifests), FEATURE_DIR (not with --model), TEACHER "
                        "(.npy, or fairseq joblib with --trust-pickle), OUT_DIR")
    p.add_argument("--splits", type=csv_list, default=("train", "valid"))
    p.add_argument("--label-rate", type=float, default=None,
                   help=f"Hz: {MFCC_RATE} for MFCC (the default with FEATURE_DIR), {FRAME_RATE} for layer "
                        "features (the only rate with --model)")
    p.add_argument("--nshard", type=int, default=1, help="shards the features were dumped in, or label shards")
    p.add_argument("--rank", type=int, default=None,
                   help="label only this shard (SPLIT_RANK_NSHARD.km); then run once with --merge")
    p.add_argument("--merge", action="store_true", help="merge the shard label files and write labels.json")
    p.add_argument("--trust-pickle", action="store_true", help="allow loading a joblib/pickle teacher")
    p.add_argument("--jobs", type=int, default=None, help="torch threads for --model on the CPU (default: all)")
    add_model_arguments(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from_audio = wants_model(args)
    manifest_dir, feature_dir, teacher_path, out_dir = _paths(args.paths, from_audio)
    manifest_dir = input_folder(manifest_dir, "manifest folder")
    if not args.merge and feature_dir is not None:
        input_folder(feature_dir, "feature folder")
    label_rate = _label_rate(args.label_rate, from_audio)
    teacher = KMeansTeacher.load(teacher_path, trust_pickle=args.trust_pickle)
    out = claim(out_dir, "labels", "OUT_DIR")
    manifests = {s: read_manifest(manifest_dir / f"{s}.tsv") for s in args.splits}
    feature_fn = model_features(args, args.jobs) if from_audio and not args.merge else None
    for split, manifest in manifests.items():
        if args.merge:
            merge_label_shards(out, split, args.nshard, manifest)
            continue
        target = out / f"{split}.km" if args.rank is None else shard_label_path(out, split, args.rank, args.nshard)
        rank, nshard = (0, 1) if args.rank is None else (args.rank, args.nshard)
        if feature_fn is not None:
            rows = label_audio(manifest, feature_fn, teacher, rank, nshard)
        else:
            shards = FeatureShards(feature_dir, split, args.nshard) if args.rank is None else \
                FeatureShards.single(feature_dir, split, rank, nshard)
            rows = assign_all(shards, teacher, len(shards), desc=f"labels {split} {rank}/{nshard}")
        write_labels(target, rows)
    if args.rank is not None:
        print(f"wrote shard {args.rank}/{args.nshard}; run again with --merge when all shards are done")
        return 0
    source = f"layer{args.layer} of {args.model}" if from_audio else str(feature_dir)
    frames = feature_fn.encoder.config.conv_spec if feature_fn is not None else ()
    info = finish_label_dir(out, teacher_path, teacher, label_rate, source, manifests, frames)
    print(f"wrote {out}: {info.num_units} units at {info.label_rate:g} Hz, lines {info.lines}")
    return 0


def _paths(paths: list[str], from_audio: bool) -> tuple[str, str | None, str, str]:
    """(manifest dir, feature dir or None, teacher, out dir) from the positional paths."""
    expected = 3 if from_audio else 4
    if len(paths) != expected:
        shape = "MANIFEST_DIR TEACHER OUT_DIR with --model" if from_audio else \
            "MANIFEST_DIR FEATURE_DIR TEACHER OUT_DIR (or MANIFEST_DIR TEACHER OUT_DIR with --model and --layer)"
        raise ValueError(f"expected {expected} paths, {shape}; got {len(paths)}: {' '.join(paths)}")
    if from_audio:
        return paths[0], None, paths[1], paths[2]
    return paths[0], paths[1], paths[2], paths[3]


def _label_rate(rate: float | None, from_audio: bool) -> float:
    if not from_audio:
        return float(MFCC_RATE) if rate is None else rate
    if rate not in (None, FRAME_RATE):
        raise ValueError(f"--label-rate {rate:g}: labels from a model's layer are {FRAME_RATE} Hz, one per frame; "
                         "drop --label-rate")
    return float(FRAME_RATE)
