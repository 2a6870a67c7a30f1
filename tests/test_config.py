"""Pipeline configs: TOML sections map to dataclasses, overrides are dotted, typos are errors."""
import pytest

from pipelines.config import load_config


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
    with pytest.raises(ValueError, match=r"config.iteration1: unknown setting\(s\) \['num_unit'\]"):
        load_config(None, ["iteration1.num_unit=5"])
    with pytest.raises(ValueError, match="key=value"):
        load_config(None, ["iteration1"])
