"""`hubert kmeans`: fit a k-means teacher on a sample of dumped features."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from clustering.kmeans import BACKENDS, fit_kmeans
from clustering.path_checks import input_folder, output_file
from clustering.feature_shards import FeatureShards

from . import add_command
from .features import DEVICES


def add_parser(subparsers) -> None:
    p = add_command(subparsers, "kmeans",
                    "Fit a k-means teacher on a fraction of the utterances of dumped features; "
                    "writes OUT.npy (centroids) and OUT.json (what made it). k-means++ seeding on a "
                    "subsample, then Lloyd iterations: on the GPU (torch) when one is present, else faiss.",
                    "hubert kmeans work/mfcc train work/km100.npy --num-units 100 --percent 0.1 --nshard 4\n"
                    "hubert kmeans work/layer6 train work/km500.npy --num-units 500 --nshard 8 --max-gib 24 --float16")
    p.add_argument("feature_dir")
    p.add_argument("split")
    p.add_argument("out", help="teacher file, .npy")
    p.add_argument("--num-units", type=int, default=100)
    p.add_argument("--percent", type=float, default=0.1, help="fraction of utterances (default: %(default)s)")
    p.add_argument("--nshard", type=int, default=1, help="shards the features were dumped in")
    p.add_argument("--backend", choices=BACKENDS, default="auto",
                   help="auto: torch on a GPU, faiss on the CPU; sklearn: the reference recipe (default: %(default)s)")
    p.add_argument("--device", choices=DEVICES, default="auto", help="where the torch backend runs")
    p.add_argument("--max-gib", type=float, default=0.0,
                   help="RAM for the sample; frames beyond it are subsampled (default: no limit)")
    p.add_argument("--float16", action="store_true", help="hold the sample as float16 (half the RAM)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def run(args) -> int:
    check_arguments(args)
    out = teacher_path(args.out)
    shards = FeatureShards(input_folder(args.feature_dir, "feature folder"), args.split, args.nshard)
    sample = shards.sample(args.percent, args.seed, max_bytes=round(args.max_gib * 2**30),
                           dtype=np.float16 if args.float16 else np.float32)
    print(f"fitting {args.num_units} units on {len(sample)} frames x {sample.shape[1]} dims "
          f"({sample.nbytes / 2**20:.0f} MiB)")
    teacher = fit_kmeans(sample, args.num_units, args.backend, args.seed, fraction=args.percent,
                         features=str(args.feature_dir), device=args.device)
    teacher.save(out)
    print(f"wrote {out}: {teacher.info.backend}, inertia {teacher.info.inertia:.4g} in {teacher.info.seconds} s")
    return 0


def check_arguments(args) -> None:
    """ValueError naming the option, before any work, for a value out of its range."""
    if not 0 < args.percent <= 1:
        raise ValueError(f"--percent must be in (0, 1], got {args.percent:g}: it is a fraction of the utterances "
                         "(0.1 fits on 10% of them)")
    if args.num_units < 2:
        raise ValueError(f"--num-units must be at least 2, got {args.num_units}")
    if args.nshard < 1:
        raise ValueError(f"--nshard must be at least 1, got {args.nshard}: the number of shards the features "
                         "were dumped in")
    if args.max_gib < 0:
        raise ValueError(f"--max-gib must be 0 (no limit) or more, got {args.max_gib:g}")


def teacher_path(path: str) -> Path:
    """`path` checked before any fitting: a .npy file name whose folder can be made."""
    out = output_file(path)
    if out.suffix != ".npy":
        raise ValueError(f"{path}: a teacher is saved as .npy centroids; give a name ending in .npy")
    return out
