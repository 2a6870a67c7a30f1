"""Each stage is one declaration: the hash, the edges and what it may open come from it."""
import ast
import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipelines.cli import build_parser, main
from pipelines.declaration import Stage
from pipelines.iterations import build_stages
from pipelines.layout import UndeclaredInput
from pipelines.run_config import load_config
from pipelines.stages import run_stages, stage_hashes

ROOT = Path(__file__).resolve().parent.parent

# The hashes the previous version (before stage declarations) gave these shipped configs: a work
# folder it wrote is continued, not redone, after an upgrade.
EARLIER = {
    "demo": {"data": "23bcc4a9c4d11de6", "it1-features": "de65c23d407f1326", "it1-kmeans": "0389b34c5c3da32f",
             "it1-labels": "5cbc565757587d60", "it1-train": "3d1b9f19c2559d76", "it2-features": "ac909ccc4d18f06b",
             "it2-kmeans": "ccc21d2a8f22c916", "it2-labels": "addf31c97e003d1a", "it2-train": "025a1d6eb0aa32d1"},
    "reproduce-gpu": {"data": "41d645b17df6f6c1", "it1-features": "a0e4f2b65f027359",
                      "it1-kmeans": "cad5e3220b6faf61", "it1-labels": "86abc08e641668a1",
                      "it1-train": "1a5166b61949e1c0"},
    "paper-base": {"data": "fa496a84790a618b", "it1-features": "fd69df1a267d6184", "it1-kmeans": "436c928d17badbb3",
                   "it1-labels": "20dbe95a55c4a3cb", "it1-train": "6f8492278e5137d2",
                   "it2-features": "bcd13db3a59ce49c", "it2-kmeans": "433f10c30fd046bb",
                   "it2-labels": "08b45a611a8c02c8", "it2-train": "3b11525ff080f50a"},
}


@pytest.mark.parametrize("name", sorted(EARLIER))
def test_an_upgrade_keeps_the_hashes_of_data_teachers_and_training(name):
    hashes = stage_hashes(build_stages(load_config(name, ["work_dir=/nonexistent/hash-check"])))
    assert {stage: hashes[stage] for stage in EARLIER[name]} == EARLIER[name]


def test_run_only_settings_do_not_change_the_training_hash_and_the_rest_do():
    def train_hash(*overrides):
        config = load_config("demo", ["work_dir=/nonexistent/w", *overrides])
        return stage_hashes(build_stages(config))["it1-train"]

    base = train_hash()
    for same in ("iteration1.train.kernels=fast", "iteration1.train.compile=true", "iteration1.train.num_workers=4",
                 "iteration1.train.log_every=7", "jobs=1", "device=cpu"):
        assert train_hash(same) == base, same
    for other in ("iteration1.train.crop_multiple=16000", "iteration1.train.seed=1",
                  "iteration1.mask={mask_prob=0.65}", "iteration1.model_settings={layerdrop=0.1}"):
        assert train_hash(other) != base, other


@dataclass(frozen=True)
class Nothing:
    pass


def test_a_stage_cannot_open_what_it_did_not_declare(tmp_path):
    def peeks(inputs, out, settings):
        inputs.teacher(1)  # the k-means stage's output, not declared

    stages = [Stage("it1-kmeans", lambda inputs, out, settings: None, Nothing()),
              Stage("it1-labels", peeks, Nothing(), reads=())]
    with pytest.raises(UndeclaredInput, match="asked for it1-kmeans/, which it does not declare"):
        run_stages(stages, tmp_path, log=lambda m: None)


def test_no_module_but_the_layout_names_a_path_in_the_work_folder():
    """Stage modules join paths only through WorkLayout; commands work on the paths users give."""
    allowed = {"layout.py", "shipped.py", "run_config.py"}  # packaged configs, a user's teacher folder
    joins = []
    for path in sorted((ROOT / "pipelines").glob("*.py")):
        if path.name in allowed:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div) and \
                    isinstance(node.right, (ast.Constant, ast.JoinedStr)):
                joins.append(f"{path.name}:{node.lineno}: {ast.unparse(node)}")
    assert joins == []


def test_unknown_keys_fail_before_any_work_in_both_commands(tmp_path, capsys):
    assert main(["train", "--manifest-dir", str(tmp_path / "m"), "--labels", str(tmp_path / "l"), "--out",
                 str(tmp_path / "out"), "foo.lr=1"]) == 2
    assert capsys.readouterr().err.strip() == ("hubert train: error: foo.lr: unknown section 'foo'; a setting is "
                                               "NAME (training), train.NAME, model.NAME or mask.NAME")
    assert main(["run", "demo", f"work_dir={tmp_path / 'w'}", "iteration1.train.lrr=1"]) == 2
    assert capsys.readouterr().err.startswith("hubert run: error: iteration1.train: unknown setting(s) ['lrr']")
    assert not (tmp_path / "out").exists() and not (tmp_path / "w").exists()


def test_help_lists_the_commands_in_the_order_of_the_pipeline():
    parser = build_parser()
    commands = list(parser._subparsers._group_actions[0].choices)
    assert commands == ["corpus", "manifest", "features", "kmeans", "labels", "train", "export", "quality",
                        "run", "demo", "configs", "status", "prune"]
