"""`hubert manifest`: scan a folder of audio into train/valid manifests."""
from __future__ import annotations

from clustering.audio import AUDIO_EXTENSIONS
from clustering.ownership import claim
from clustering.audio_folder import scan_audio, write_scan

from . import add_command, csv_list


def add_parser(subparsers) -> None:
    p = add_command(subparsers, "manifest",
                    "Scan AUDIO_DIR, decode every file, and write train.tsv / valid.tsv "
                    "(fairseq format) plus rejected.tsv listing unusable files.",
                    "hubert manifest /data/LibriSpeech/train-clean-100 work/manifest --valid-percent 0.01")
    p.add_argument("audio_dir")
    p.add_argument("out_dir")
    p.add_argument("--ext", type=csv_list, default=AUDIO_EXTENSIONS,
                   help="comma-separated extensions to include (default: %(default)s)")
    p.add_argument("--valid-percent", type=float, default=0.01,
                   help="fraction of files put in valid.tsv (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the train/valid split")
    p.add_argument("--jobs", type=int, default=None, help="decoding processes (default: all cores)")
    p.add_argument("--strict", action="store_true", help="stop at the first bad file instead of rejecting it")
    p.set_defaults(func=run)


def run(args) -> int:
    claim(args.out_dir, "manifest", "OUT_DIR")  # a wrong output path fails now, not after the scan
    result = scan_audio(args.audio_dir, args.ext, args.valid_percent, args.seed, args.jobs, args.strict)
    write_scan(result, args.audio_dir, args.out_dir)
    print(f"{args.out_dir}: {result.summary()}"
          + (f" (see {args.out_dir}/rejected.tsv)" if result.rejected else ""))
    return 0
