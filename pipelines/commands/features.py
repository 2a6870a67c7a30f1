"""`hubert features`: dump the MFCC or a model layer's features of one manifest shard."""
from __future__ import annotations

from pathlib import Path

from clustering.features import dump_features, mfcc_features
from clustering.manifest import check_audio_present, read_manifest
from clustering.ownership import claim

from . import add_command

DEVICES = ("auto", "cpu", "cuda")


def add_parser(subparsers) -> None:
    p = add_command(subparsers, "features",
                    "Compute teacher features of a manifest and write fairseq-style shards "
                    "SPLIT_RANK_NSHARD.npy/.len: the reference MFCC (39 dims, 100 Hz) by default, or "
                    "transformer layer N of a model (50 Hz) with --layer and --model, in padded batches "
                    "on the GPU when one is present. Crash-safe: rerun a killed job.",
                    "hubert features work/manifest/train.tsv work/mfcc --rank 0 --nshard 4 --jobs 2\n"
                    "hubert features work/manifest/train.tsv work/layer6 --layer 6 --model work/it1.pt "
                    "--rank 0 --nshard 8\n"
                    "hubert features work/manifest/train.tsv work/layer6 --layer 6 --model hf/hubert-base")
    p.add_argument("manifest", help="manifest .tsv; its name (train, valid) is the split")
    p.add_argument("out_dir")
    p.add_argument("--rank", type=int, default=0)
    p.add_argument("--nshard", type=int, default=1)
    p.add_argument("--jobs", type=int, default=None,
                   help="MFCC: processes (default: 1); --layer on the CPU: torch threads (default: all cores)")
    add_model_arguments(p)
    p.set_defaults(func=run)


def add_model_arguments(p) -> None:
    """--layer, --model, --device, --batch-seconds: features from a model (shared with `hubert labels`)."""
    p.add_argument("--layer", type=int, default=None, help="transformer layer (1-based) of --model")
    p.add_argument("--model", default=None,
                   help="a checkpoint written by `hubert train`, or a Hugging Face HuBERT folder")
    p.add_argument("--device", choices=DEVICES, default="auto",
                   help="where the model runs; auto: the GPU when present (default: %(default)s)")
    p.add_argument("--batch-seconds", type=float, default=None,
                   help="padded audio per forward pass (default: 30 on the CPU, 600 on a GPU)")


def wants_model(args) -> bool:
    """Whether --layer and --model ask for a model's features (ValueError when only one is given)."""
    if (args.layer is None) != (args.model is None):
        raise ValueError("--layer and --model go together: give both (e.g. --layer 6 --model work/it1.pt)")
    return args.model is not None


def model_features(args, jobs: int | None = None):
    """The LayerFeatures that --model/--layer ask for, or None when neither is given."""
    if not wants_model(args):
        return None
    from pretrain.layer_features import LayerFeatures
    from pretrain.model_io import load_encoder

    return LayerFeatures(load_encoder(args.model), args.layer, device=args.device,
                         batch_seconds=args.batch_seconds, cpu_threads=jobs)


def run(args) -> int:
    split = Path(args.manifest).stem
    manifest = read_manifest(args.manifest)
    check_audio_present(manifest, args.manifest)
    claim(args.out_dir, "features", "OUT_DIR")  # checked before a model is loaded
    feature_fn = model_features(args, args.jobs) or mfcc_features
    npy, _ = dump_features(manifest, feature_fn, args.out_dir, split, args.rank, args.nshard, args.jobs or 1)
    print(f"wrote {npy}")
    return 0
