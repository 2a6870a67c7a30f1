"""`hubert train`: masked-prediction pretraining, resumable, single process or under torchrun."""
from __future__ import annotations

from pipelines.run_config import parse_value
from pretrain.model_config import mask_from_settings, model_from_settings
from pretrain.train_config import apply_overrides, train_preset

from . import add_command


def add_parser(subparsers) -> None:
    p = add_command(subparsers, "train",
                    "Pretrain HuBERT on a manifest folder (train.tsv, valid.tsv) and one or more label "
                    "folders (SPLIT.km + labels.json, which give the number of units and the label rate). "
                    "Rerunning the same command resumes from the newest readable checkpoint.",
                    "hubert train --manifest-dir work/manifest --labels work/labels100 --out work/it1 "
                    "--model base max_updates=250000 update_freq=4\n"
                    "torchrun --nproc_per_node=8 -m pipelines.cli train --manifest-dir ... --labels ... --out ...")
    p.add_argument("--manifest-dir", required=True)
    p.add_argument("--labels", action="append", required=True, help="label folder; repeat for several label sets")
    p.add_argument("--out", required=True, help="folder for checkpoints/, train_log.jsonl and tb/")
    p.add_argument("--model", default="base", help="tiny, small, base, large or xlarge (default: %(default)s)")
    p.add_argument("--init-from", help="start from these encoder weights (checkpoint or Hugging Face directory)")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="training settings, e.g. lr=5e-4 max_updates=400000 precision=bf16; model.NAME=... "
                        "and mask.NAME=... change the preset's model and masking, e.g. mask.mask_prob=0.65")
    p.set_defaults(func=run)


def run(args) -> int:
    from pretrain.trainer import train  # torch: imported only when the command runs

    sections = {"train": {}, "model": {}, "mask": {}}
    for item in args.overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"override {item!r} must look like key=value, e.g. max_updates=1000")
        section, dot, name = key.partition(".")
        sections[section if dot and section in sections else "train"][name if dot else key] = parse_value(value)
    config = apply_overrides(train_preset(args.model), sections["train"])
    model = model_from_settings(args.model, sections["model"], "model")
    result = train(args.manifest_dir, args.labels, args.out, model, config, init_from=args.init_from,
                   mask_config=mask_from_settings(sections["mask"], "mask"))
    print(f"finished at update {result.update}; checkpoints in {result.checkpoint_dir}")
    return 0
