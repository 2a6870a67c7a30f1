"""Installed as a package (`pip install .`, not editable), `hubert` runs from any folder: the
shipped configs travel inside it, and nothing is read from the source tree."""
import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ("custom-language", "demo", "paper-base", "reproduce-gpu", "reproduce-small")
TINY_RUN = ["work_dir=W", "corpus.hours=0.02", "corpus.languages=en,fr", "valid_percent=0.3",
            "iteration1.model=tiny", "iteration2.model=tiny", "iteration1.num_units=20", "iteration2.num_units=20",
            "iteration2.layer=1", "iteration1.kmeans_percent=1.0", "iteration2.kmeans_percent=1.0",
            "iteration1.train={max_updates=4, save_every=4, valid_every=4, warmup_updates=2}",
            "iteration2.train={max_updates=4, save_every=4, valid_every=4, warmup_updates=2}"]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(venv, elsewhere): a fresh virtualenv with the toolkit installed from a copy of the source
    tree, and an empty folder far from the checkout to run it in."""
    base = tmp_path_factory.mktemp("package")
    # Build from a copy of what the package declares: an in-tree build would leave build/ in the
    # checkout, and a file the declaration misses then fails here instead of on a user's machine.
    source = base / "source"
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    for top in sorted({name.split(".")[0] for name in packages}):
        shutil.copytree(ROOT / top, source / top, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)

    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                  check=True, capture_output=True, text=True).stdout.strip())
    # Borrow this environment's torch, numpy, pip, setuptools... instead of reinstalling them. A
    # plain folder line in a .pth adds the folder but runs none of the .pth files inside it, so
    # this environment's editable install of the toolkit (a .pth hook) stays out.
    (purelib / "borrowed.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    # --ignore-installed: never touch the borrowed environment's own copy of hubert-pretrain.
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                    "--ignore-installed", "--disable-pip-version-check", str(source)],
                   check=True, cwd=base, env=clean_env())
    elsewhere = base / "elsewhere"
    elsewhere.mkdir()
    return venv, elsewhere


def clean_env() -> dict:
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def hubert(installed, *args) -> subprocess.CompletedProcess:
    venv, elsewhere = installed
    return subprocess.run([venv / "bin" / "hubert", *args], cwd=elsewhere, env=clean_env(),
                          capture_output=True, text=True, timeout=300)


def test_the_installed_toolkit_is_imported_from_the_virtualenv_not_the_checkout(installed):
    venv, elsewhere = installed
    where = subprocess.run([venv / "bin" / "python", "-c",
                            "import clustering, pipelines, pretrain; "
                            "print(clustering.__file__, pipelines.__file__, pretrain.__file__)"],
                           cwd=elsewhere, env=clean_env(), check=True, capture_output=True, text=True)
    for path in where.stdout.split():
        assert Path(path).is_relative_to(venv) and "site-packages" in path, path


def test_demo_help_and_the_shipped_configs_work_from_another_folder(installed):
    venv, _ = installed
    demo = hubert(installed, "demo", "--help")
    assert demo.returncode == 0 and "hubert demo work_dir=" in demo.stdout, demo.stderr
    listing = hubert(installed, "configs")
    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.splitlines()
    assert [line.split()[0] for line in lines[:-1]] == list(SHIPPED)
    assert "hubert run paper-base audio_dir=" in listing.stdout
    shipped_dir = Path(lines[-1].removeprefix("(files in ").removesuffix(")"))
    assert shipped_dir.is_relative_to(venv) and shipped_dir.name == "configs"
    unknown = hubert(installed, "run", "nope")
    assert unknown.returncode == 2
    assert unknown.stderr.strip().endswith("custom-language, demo, paper-base, reproduce-gpu, reproduce-small "
                                           "(`hubert configs` describes them)")


def test_a_shipped_config_runs_by_name_from_another_folder(installed):
    _, elsewhere = installed
    done = hubert(installed, "run", "demo", *TINY_RUN, "--until", "it1-train")
    assert done.returncode == 0, done.stderr[-3000:]
    assert (elsewhere / "W" / "it1-train" / "DONE.json").is_file()
    assert sorted((elsewhere / "W" / "it1-train" / "checkpoints").glob("update_*.pt"))
