"""Pipeline configs: TOML sections map to dataclasses, overrides are dotted, typos are errors."""
from pathlib import Path

import pytest

from pipelines.run_config import load_config

DEMO = Path(__file__).resolve().parent.parent / "pipelines" / "configs" / "demo.toml"


def test_defaults_follow_the_paper():
    config = load_config(None)
    assert (config.iteration1.features, config.iteration1.num_units) == ("mfcc", 100)
    assert (config.iteration2.features, config.iteration2.layer, config.iteration2.num_units) == ("layer", 6, 500)


def test_file_and_dotted_overrides(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('# hubert run run.toml\nwork_dir = "w"\n[iteration1]\nnum_units = 50\n[iteration1.train]\nmax_updates = 7\n')
    config = load_config(path, ["iteration1.train.max_updates=9", "corpus.languages=en,fr", "iteration2.model=tiny"])
    assert config.work_dir == "w" and config.iteration1.num_units == 50
    assert config.iteration1.train == {"max_updates": 9}
    assert config.corpus.languages == ("en", "fr") and config.iteration2.model == "tiny"


def test_unknown_keys_are_named(tmp_path):
    with pytest.raises(ValueError, match=r"^iteration1: unknown setting\(s\) \['num_unit'\]"):
        load_config(None, ["iteration1.num_unit=5"])
    with pytest.raises(ValueError, match="key=value"):
        load_config(None, ["iteration1"])


@pytest.mark.parametrize("override, message", [
    ("iteration1.train.max_updates=ten", "iteration1.train.max_updates: expected a whole number, got 'ten'"),
    ('iteration1.num_units="20"', "iteration1.num_units: expected a whole number, got '20'"),
    ("iteration1.train.max_updates=6.5", "iteration1.train.max_updates: expected a whole number, got 6.5"),
    ("iteration1.train.warmup_updates=-3", "iteration1.train.warmup_updates: must be at least 0, got -3"),
    ("corpus.hours=-1", "corpus.hours: must be positive"),
    ("valid_percent=2", r"valid_percent: must be a fraction in \[0, 1\)"),
    ("iteration2.kmeans_percent=0", r"iteration2.kmeans_percent: must be a fraction in \(0, 1\]"),
    ("scan_layers=no", "scan_layers: expected true or false, got 'no'"),
    ("export.labels=yes", r"export.labels: need two or more distinct class names, got \['yes'\]"),
    ("export.transcripts=/nowhere.tsv", "export.transcripts: /nowhere.tsv does not exist"),
    ("export_heads=none", r"config: unknown setting\(s\) \['export_heads'\]"),
    ("iteration2.layer=99", r"iteration2.layer: 99 is deeper than the teacher's 2 layers; choose 1..2"),
    ("iteration1.model=giant", "iteration1.model: unknown value 'giant'; choose one of tiny, small, base"),
    ("iteration1.features=bogus", "iteration1.features: unknown value 'bogus'; choose one of mfcc, layer"),
    ("iteration1.features=layer", "iteration1.features: 'layer' needs iteration1.teacher_hf"),
    ("iteration1.train.precision=fp8", "iteration1.train.precision: unknown value 'fp8'"),
    ("iteration1.train.lr=0", "iteration1.train.lr: must be positive"),
    ("iteration1=3", "iteration1: expected a table of settings, got 3"),
    ("iteration1.train=5", r"iteration1.train: expected a table such as"),
    ("corpus.hours.x=1", "corpus.hours: is a single value, not a table"),
    ("jobs=-1", "jobs: must be at least 0"),
    ("iteration1.model_settings={conv_layers=[[32, 10, 5], [32, 3, 2]]}",
     "iteration1.model_settings.conv_layers: the conv strides multiply to 10; labels assume 320"),
    ("iteration2.mask={mask_prob=1.5}", r"iteration2.mask.mask_prob: must be a fraction in \(0, 1\]"),
    ("iteration1.model_settings={hidden_size=65}", "iteration1.model_settings.hidden_size: 65 is not divisible"),
    ("iteration2.layer=best", 'iteration2.layer: expected a layer number \\(1-based\\) or "auto", got \'best\''),
    ("iteration2.layer=[6]", r"iteration2.layer: expected int or str, got \[6\]"),
    ("iteration1.layer=auto", 'iteration1.layer: "auto" picks a layer of the iteration-1 model'),
    ("test_percent=0.96", r"test_percent: valid_percent \+ test_percent must stay below 1"),
])
def test_each_config_mistake_is_named_before_anything_runs(override, message):
    with pytest.raises(ValueError, match="^" + message):
        load_config(DEMO, [override])


def test_inputs_inside_the_work_folder_are_refused_naming_both(tmp_path):
    (tmp_path / "w" / "data").mkdir(parents=True)
    with pytest.raises(ValueError, match=rf"audio_dir: {tmp_path}/w/data lies inside work_dir {tmp_path}/w;"):
        load_config(DEMO, [f"audio_dir={tmp_path}/w/data", f"work_dir={tmp_path}/w"])
    with pytest.raises(ValueError, match="alignments: .* does not exist"):
        load_config(DEMO, [f"alignments={tmp_path}/missing.tsv", f"work_dir={tmp_path}/w"])


def test_a_shipped_config_is_found_by_name_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = load_config("paper-base")
    assert config.work_dir == "work/paper-base" and config.iteration2.num_units == 500
    assert load_config("demo.toml").iteration1.model == "tiny"
    (tmp_path / "demo").mkdir()  # a folder of that name (a work folder, say) does not hide the config
    assert load_config("demo").iteration1.model == "tiny"


def test_an_existing_file_wins_over_a_shipped_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "paper-base").write_text('work_dir = "mine"\n')
    assert load_config("paper-base").work_dir == "mine"


def test_an_unknown_name_lists_the_shipped_configs_in_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError) as caught:
        load_config("nope")
    assert str(caught.value) == ("nope: is neither a config file nor a shipped config; give a TOML file or a "
                                 "shipped config: custom-language, demo, paper-base, reproduce-gpu, reproduce-small "
                                 "(`hubert configs` describes them)")
    with pytest.raises(FileNotFoundError, match="^configs/demo.toml: is neither .* custom-language, demo,"):
        load_config("configs/demo.toml")


def test_auto_layer_needs_alignments_and_a_valid_split_of_the_users_audio(tmp_path):
    audio = tmp_path / "audio"
    audio.mkdir()
    (tmp_path / "phones.tsv").write_text("a\tx,y\n")
    base = [f"work_dir={tmp_path / 'work'}", f"audio_dir={audio}", "iteration2.layer=auto"]
    with pytest.raises(ValueError, match='^iteration2.layer: "auto" chooses the layer by PNMI against phone'):
        load_config(DEMO, base)
    with pytest.raises(ValueError, match='^iteration2.layer: "auto" chooses the layer on the valid split'):
        load_config(DEMO, base + [f"alignments={tmp_path / 'phones.tsv'}", "valid_percent=0"])
    config = load_config(DEMO, base + [f"alignments={tmp_path / 'phones.tsv'}"])
    assert config.iteration2.layer == "auto" and load_config(DEMO, ["iteration2.layer=2"]).iteration2.layer == 2
