"""The first N updates of a config's iteration-1 training on its full schedule, scored.

Runs `hubert run CONFIG --until it1-train`, stops the trainer once checkpoint update_N.pt is
written (SIGTERM: it finishes the update in flight, saves, exits), so the learning rate follows
the config's whole schedule (warm-up, decay to max_updates) up to N. Then scores update_N's layers
as the it1-scan stage does (a k-means with `scan_units` units per layer fitted on train, PNMI on
valid) and prints the train/valid records of train_log.jsonl up to N.

    .venv/bin/python benchmarks/early_curve.py reproduce-small /tmp/rs --updates 500
    # another checkout's recipe and trainer (scoring stays this tree's), reusing the first run's
    # corpus, features, k-means and labels:
    git worktree add /tmp/old 90a014c
    .venv/bin/python benchmarks/early_curve.py reproduce-small /tmp/rs-old --updates 500 \\
        --source /tmp/old --reuse /tmp/rs
"""
from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

STOPPED_BY_SIGTERM = 143


def train_until(config: str, work: Path, updates: int, source: Path, overrides: list[str]) -> Path:
    """Run the recipe from `source` until checkpoint update_`updates`.pt exists; its path."""
    from pretrain.checkpoint import checkpoint_path

    checkpoint = checkpoint_path(work / "it1-train" / "checkpoints", updates)
    command = [sys.executable, "-m", "pipelines.cli", "run", config, f"work_dir={work}",
               f"iteration1.train.save_every={updates}", *overrides, "--until", "it1-train"]
    print("$", " ".join(command), f"(in {source})", flush=True)
    process = subprocess.Popen(command, cwd=source)
    while process.poll() is None and not checkpoint.exists():
        time.sleep(5)
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    code = process.wait()
    if code not in (0, STOPPED_BY_SIGTERM) or not checkpoint.exists():
        raise SystemExit(f"early_curve: the run ended with status {code} without {checkpoint}")
    return checkpoint


def score_layers(config_name: str, work: Path, checkpoint: Path, overrides: list[str]) -> dict[int, float]:
    """{layer: PNMI on valid} of `checkpoint`, as the it1-scan stage scores it."""
    from clustering.manifest import read_manifest
    from clustering.row_quality import quality_data
    from pipelines.layout import WorkLayout
    from pipelines.run_config import load_config
    from pipelines.scan_stage import ScanSettings, budget, scan_checkpoint, split_alignments
    from pipelines.shipped import config_path

    config = load_config(config_path(config_name), [f"work_dir={work}", *overrides])
    inputs = WorkLayout(work).for_stage("it1-scan", ("data",), {"alignments": Path(config.alignments)
                                                                 if config.alignments else None})
    valid = {"valid": read_manifest(inputs.manifest("valid"))}
    settings = ScanSettings(1, config.scan_units, False, config.seed, config.device)
    measured = quality_data(read_manifest(inputs.manifest("train")), valid, split_alignments(inputs, valid), None,
                            budget(settings))
    return scan_checkpoint(checkpoint, measured, settings, "it1")[0]["valid"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config")
    parser.add_argument("work_dir", type=Path)
    parser.add_argument("--updates", type=int, default=500)
    parser.add_argument("--source", type=Path, default=ROOT, help="the checkout whose recipe runs")
    parser.add_argument("--reuse", type=Path, help="a work folder whose stages before it1-train to copy")
    parser.add_argument("overrides", nargs="*", help="key=value settings for the config")
    args = parser.parse_intermixed_args()  # key=value overrides before or after the options
    if args.reuse and not args.work_dir.exists():
        shutil.copytree(args.reuse, args.work_dir, ignore=shutil.ignore_patterns("it1-train", "run.lock"))
    checkpoint = train_until(args.config, args.work_dir, args.updates, args.source.resolve(), args.overrides)
    records = [json.loads(line) for line in (args.work_dir / "it1-train" / "train_log.jsonl").open()]
    for record in records:
        if record["update"] <= args.updates:
            print(f"{record['split']:5} update {record['update']:5}: masked acc {record['masked_acc']:.4f}, "
                  f"loss {record['loss']:.3f}")
    scores = score_layers(args.config, args.work_dir, checkpoint, args.overrides)
    print(f"PNMI on valid at update {args.updates}, {len(scores)} layers: "
          + ", ".join(f"{layer}:{value:.3f}" for layer, value in scores.items()))


if __name__ == "__main__":
    main()
