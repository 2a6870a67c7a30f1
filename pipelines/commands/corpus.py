"""`hubert corpus`: the built-in synthetic speech corpus with phone alignments."""
from __future__ import annotations

from clustering.ownership import claim
from clustering.synthetic.corpus import LANGUAGES, check_corpus_settings, make_corpus

from . import add_command, csv_list


def add_parser(subparsers) -> None:
    p = add_command(subparsers, "corpus",
                    "Synthesise varied speech with espeak-ng (voices, speaking rates, pitch, pauses) "
                    "in several languages: 16 kHz wavs, train/valid manifests, transcripts, and "
                    "100 Hz phone alignments (SPLIT.phn.tsv) for cluster-quality analysis. No internet needed.",
                    "hubert corpus data/corpus --hours 0.5 --languages en,de,fr")
    p.add_argument("out_dir")
    p.add_argument("--hours", type=float, default=0.5)
    p.add_argument("--languages", type=csv_list, default=LANGUAGES,
                   help=f"comma-separated, from {','.join(LANGUAGES)} (default: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--valid-percent", type=float, default=0.05)
    p.add_argument("--jobs", type=int, default=2)
    p.set_defaults(func=run)


def run(args) -> int:
    check_corpus_settings(args.hours, args.languages, args.valid_percent)  # before OUT_DIR is made
    claim(args.out_dir, "corpus", "OUT_DIR")
    summary = make_corpus(args.out_dir, args.hours, args.languages, args.seed, args.valid_percent, args.jobs)
    for language, entry in summary.items():
        print(f"{language}: {entry['utterances']} utterances, {entry['hours']:.3f} h, {len(entry['phones'])} phones")
    print(f"wrote {args.out_dir} (phone inventories in {args.out_dir}/summary.md)")
    return 0
