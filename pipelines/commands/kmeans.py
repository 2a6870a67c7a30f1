"""`hubert kmeans`: fit a k-means teacher on a sample of dumped features."""
from __future__ import annotations

from pathlib import Path

from clustering.kmeans import fit_kmeans
from clustering.paths import input_folder, output_file
from clustering.shards import FeatureShards

from . import add_command


def add_parser(subparsers) -> None:
    p = add_command(subparsers, "kmeans",
                    "Fit a k-means teacher on a fraction of the utterances of dumped features; "
                    "writes OUT.npy (centroids) and OUT.json (what made it).",
                    "hubert kmeans work/mfcc train work/km100.npy --num-units 100 --percent 0.1 --nshard 4")
    p.add_argument("feature_dir")
    p.add_argument("split")
    p.add_argument("out", help="teacher file, .npy")
    p.add_argument("--num-units", type=int, default=100)
    p.add_argument("--percent", type=float, default=0.1, help="fraction of utterances (default: %(default)s)")
    p.add_argument("--nshard", type=int, default=1, help="shards the features were dumped in")
    p.add_argument("--backend", choices=("faiss", "sklearn"), default="faiss")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def run(args) -> int:
    out = teacher_path(args.out)
    shards = FeatureShards(input_folder(args.feature_dir, "feature folder"), args.split, args.nshard)
    sample = shards.sample(args.percent, args.seed)
    print(f"fitting {args.num_units} units on {len(sample)} frames x {sample.shape[1]} dims "
          f"({sample.nbytes / 2**20:.0f} MiB)")
    teacher = fit_kmeans(sample, args.num_units, args.backend, args.seed, fraction=args.percent,
                         features=str(args.feature_dir))
    teacher.save(out)
    print(f"wrote {out}: inertia {teacher.info.inertia:.4g} in {teacher.info.seconds} s")
    return 0


def teacher_path(path: str) -> Path:
    """`path` checked before any fitting: a .npy file name whose folder can be made."""
    out = output_file(path)
    if out.suffix != ".npy":
        raise ValueError(f"{path}: a teacher is saved as .npy centroids; give a name ending in .npy")
    return out
