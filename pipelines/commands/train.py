"""`hubert train`: masked-prediction pretraining, resumable, single process or under torchrun."""
from __future__ import annotations

import contextlib
from pathlib import Path

from clustering.ownership import NotOurs, claim
from pipelines.run_config import apply_overrides_to
from pipelines.spread import worker
from pipelines.workdir import is_stage_folder, work_lock
from pretrain.run_files import CHECKPOINTS
from pretrain.model_config import mask_from_settings
from pretrain.presets import model_from_settings, train_preset
from pretrain.train_config import apply_overrides, check_runnable
from pretrain.typed_settings import SettingError

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

    model, mask, config = train_settings(args.model, args.overrides)
    check_runnable(config, model.conv_spec)  # before --out is made
    with run_folder(args.out) as out:
        result = train(args.manifest_dir, args.labels, out, model, config, init_from=args.init_from,
                       mask_config=mask)
    print(f"finished at update {result.update}; checkpoints in {result.checkpoint_dir}")
    return 0


SECTIONS = ("train", "model", "mask")


def train_settings(preset: str, overrides: list[str]):
    """(ModelConfig, MaskConfig, TrainConfig) of `preset` with `overrides` in the syntax of `hubert run`
    (a bare key is a training setting: max_updates=1000; model.NAME and mask.NAME change the model and
    masking), every key checked: an unknown section or setting is named before any work."""
    table = apply_overrides_to({}, overrides, bare="train", example="max_updates=1000")
    for section in table:
        if section not in SECTIONS:
            key = next(item.split("=", 1)[0] for item in overrides if item.startswith(f"{section}."))
            raise SettingError(f"{key}: unknown section {section!r}; a setting is NAME (training), train.NAME, "
                               "model.NAME or mask.NAME")
    return (model_from_settings(preset, table.get("model", {}), "model"),
            mask_from_settings(table.get("mask", {}), "mask"),
            apply_overrides(train_preset(preset), table.get("train", {}), "train"))


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
    claim(path, "train", "--out", earlier=lambda folder: (folder / CHECKPOINTS).is_dir())
    with work_lock(path):
        yield path
