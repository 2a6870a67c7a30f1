"""`hubert train`: masked-prediction pretraining, resumable, single process or under torchrun."""
from __future__ import annotations

import contextlib
from pathlib import Path

from clustering.ownership import NotOurs, claim
from pipelines.run_config import parse_value
from pipelines.spread import worker
from pipelines.workdir import is_stage_folder, work_lock
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
    with run_folder(args.out) as out:
        result = train(args.manifest_dir, args.labels, out, model, config, init_from=args.init_from,
                       mask_config=mask_from_settings(sections["mask"], "mask"))
    print(f"finished at update {result.update}; checkpoints in {result.checkpoint_dir}")
    return 0


@contextlib.contextmanager
def run_folder(out: str):
    """--out as a training folder of ours, held by this run (its run.lock) for the block: new, empty, or
    one `hubert train` made (an earlier version's has checkpoints/); never a stage folder of a
    `hubert run`, which that run continues. Under torchrun, worker 0 claims and holds it."""
    path = Path(out).expanduser()
    if worker()[0] > 0:
        yield path
        return
    if is_stage_folder(path):
        raise NotOurs(f"--out: {path} is the {path.name} stage of the `hubert run` in {path.parent}; continue "
                      "it with that `hubert run` command, or give another --out")
    claim(path, "train", "--out", earlier=lambda folder: (folder / "checkpoints").is_dir())
    with work_lock(path):
        yield path
