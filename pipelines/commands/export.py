"""`hubert export`: a training checkpoint -> a Hugging Face HuBERT directory."""
from __future__ import annotations

from pathlib import Path

from clustering.ownership import NotOurs, is_empty, marker_kind, move_aside, refusal
from pretrain.model_config import HEADS

from . import add_command, csv_list


def add_parser(subparsers) -> None:
    p = add_command(subparsers, "export",
                    "Write a checkpoint's encoder as a directory that transformers' HubertModel, "
                    "HubertForCTC or HubertForSequenceClassification load with from_pretrained "
                    "(pretraining-only weights are left out).",
                    "hubert export work/it2-train/checkpoints/best.pt out/hubert-ctc --head ctc "
                    "--transcripts data/transcripts.tsv\n"
                    "hubert export work/it2-train/checkpoints/best.pt out/hubert-emotion --head classification "
                    "--labels angry,happy,neutral,sad")
    p.add_argument("checkpoint", help="checkpoint .pt written by `hubert train`, or a Hugging Face directory")
    p.add_argument("out_dir")
    p.add_argument("--head", choices=tuple(HEADS), default="none")
    p.add_argument("--transcripts", help="ctc: uid<TAB>text per line; the vocabulary is their characters")
    p.add_argument("--vocab", help="ctc: text file with one token per line (instead of --transcripts)")
    p.add_argument("--labels", type=csv_list, help="classification: comma-separated class names")
    p.set_defaults(func=run)


def run(args) -> int:
    # torch is imported here, not at the top: processes that re-import the `hubert` script stay light
    from pretrain.hf import export_hf
    from pretrain.model_io import load_encoder

    from pretrain.vocabulary import transcript_characters

    tokens = None
    if args.transcripts:
        tokens = transcript_characters(args.transcripts)
    elif args.vocab:
        tokens = [line.strip() for line in Path(args.vocab).read_text().splitlines() if line.strip()]
    encoder = load_encoder(args.checkpoint)  # a bad checkpoint fails before OUT_DIR is touched
    make_way(Path(args.out_dir).expanduser())
    out = export_hf(encoder, args.out_dir, args.head, tokens, list(args.labels) if args.labels else None)
    print(f"wrote {out}: load it with transformers.{HEADS[args.head]}.from_pretrained({str(out)!r})")
    return 0


def make_way(out: Path) -> None:
    """An earlier export of ours in `out` is moved aside whole (said), so the new one never mixes with
    its files; a folder with anything else in it is refused."""
    if not out.is_dir() or is_empty(out):
        return
    found = marker_kind(out)
    if found != "export":
        raise NotOurs(refusal(out, "export", "OUT_DIR", found))
    print(f"moved the earlier export in {out} to {move_aside(out)}")
