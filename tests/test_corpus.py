"""The built-in corpus: deterministic, several languages, alignments that cover and fit the audio."""
import json
import subprocess
import sys

import numpy as np
import pytest

from clustering.audio import load_audio
from clustering.synthetic.corpus import clean_phone, make_corpus
from clustering.manifest import read_manifest


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("corpus")
    make_corpus(out, hours=0.012, languages=("en", "fr", "es"), seed=3, valid_percent=0.2)
    return out


def alignments(path):
    return {uid: phones.split(",") for uid, phones in (l.split("\t") for l in path.read_text().splitlines())}


def test_same_seed_same_bytes(corpus, tmp_path):
    make_corpus(tmp_path, hours=0.012, languages=("en", "fr", "es"), seed=3, valid_percent=0.2)
    for name in ("train.phn.tsv", "valid.phn.tsv", "transcripts.tsv", "summary.json"):
        assert (tmp_path / name).read_bytes() == (corpus / name).read_bytes()
    for wav in (corpus / "wav").rglob("*.wav"):
        assert (tmp_path / wav.relative_to(corpus)).read_bytes() == wav.read_bytes()


def test_alignments_cover_each_utterance_within_20_ms(corpus):
    for split in ("train", "valid"):
        manifest = read_manifest(corpus / f"{split}.tsv")
        aligned = alignments(corpus / f"{split}.phn.tsv")
        assert list(aligned) == [manifest.utterance_id(i) for i in range(len(manifest))]
        for i, n in enumerate(manifest.sizes):
            assert abs(len(aligned[manifest.utterance_id(i)]) * 0.01 - n / 16000) <= 0.02


def test_phone_names_are_clean_and_three_languages_present(corpus):
    summary = json.loads((corpus / "summary.json").read_text())
    assert set(summary) == {"en", "fr", "es"}
    for entry in summary.values():
        assert len(entry["phones"]) >= 15
        for phone in entry["phones"]:
            assert not set(phone) & set("ˈˌ',()?") and phone
    assert clean_phone("ˈaɪ") == "aɪ" and clean_phone("(en)") is None
    assert clean_phone("??") == "spn" and clean_phone("") == "sil"


def test_silence_frames_are_quiet_and_vowels_are_loud(corpus):
    manifest = read_manifest(corpus / "train.tsv")
    aligned = alignments(corpus / "train.phn.tsv")
    quiet, loud = [], []
    for i in range(len(manifest)):
        wav = load_audio(manifest.audio_path(i))
        for k, phone in enumerate(aligned[manifest.utterance_id(i)]):
            energy = float(np.mean(wav[k * 160:(k + 1) * 160] ** 2))
            if phone == "sil":
                quiet.append(energy)
            elif phone in ("a", "e", "i", "o", "u", "ə"):
                loud.append(energy)
    assert np.median(loud) > 30 * np.median(quiet)


def test_a_tiny_corpus_still_gets_a_valid_utterance(tmp_path):
    make_corpus(tmp_path, hours=0.008, languages=("en",), seed=0, valid_percent=0.01)
    train, valid = read_manifest(tmp_path / "train.tsv"), read_manifest(tmp_path / "valid.tsv")
    assert len(train) >= 1 and len(valid) == 1
    assert len(alignments(tmp_path / "valid.phn.tsv")) == 1


def test_the_cli_loads_without_torch_so_synthesis_processes_start_fast():
    """Each utterance is synthesised in a process that imports the main module again (`hubert`,
    i.e. pipelines.cli); a CLI that loads torch at import costs every one of them ~1.5 s of CPU
    (the demo's data stage went from 10 s to 130 s that way)."""
    probe = "import sys, pipelines.cli; print(sorted(m for m in ('torch', 'torchaudio') if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"
