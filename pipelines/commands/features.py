"""`hubert features`: dump MFCC teacher features of one manifest shard."""
from __future__ import annotations

from clustering.features import dump_features, mfcc_features
from clustering.manifest import read_manifest

from . import add_command


def add_parser(subparsers) -> None:
    p = add_command(subparsers, "features",
                    "Compute the reference MFCC features (39 dims, 100 Hz) of a manifest and write "
                    "fairseq-style shards SPLIT_RANK_NSHARD.npy/.len. Crash-safe: rerun a killed job.",
                    "hubert features work/manifest/train.tsv work/mfcc --rank 0 --nshard 4 --jobs 2")
    p.add_argument("manifest", help="manifest .tsv; its name (train, valid) is the split")
    p.add_argument("out_dir")
    p.add_argument("--rank", type=int, default=0)
    p.add_argument("--nshard", type=int, default=1)
    p.add_argument("--jobs", type=int, default=1, help="processes (default: %(default)s)")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    split = Path(args.manifest).stem
    npy, _ = dump_features(read_manifest(args.manifest), mfcc_features, args.out_dir, split,
                           args.rank, args.nshard, args.jobs)
    print(f"wrote {npy}")
    return 0
