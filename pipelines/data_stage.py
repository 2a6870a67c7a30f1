"""The data stage: manifests of the user's audio (decoded and checked), or the built-in corpus.

data/ holds train.tsv, valid.tsv (and test.tsv with test_percent), rejected.tsv for the user's
audio, or the built-in corpus's wav/, SPLIT.phn.tsv and transcripts.tsv. Its manifests follow
the audio when it moves (`refresh`), and the user's alignments are checked against them right
after the stage, before any feature or training.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from clustering.alignments import load_alignments
from clustering.audio_folder import scan_audio, write_scan
from clustering.heldout import split_off_test
from clustering.manifest import read_manifest
from clustering.manifest_arrays import reroot_manifest
from clustering.quality import check_alignment_lengths
from clustering.synthetic.corpus import make_corpus
from pretrain.typed_settings import OMIT_DEFAULT, RUN_ONLY

from .layout import HELDOUT, WorkLayout
from .run_config import CorpusSettings

MIN_CORPUS_HELDOUT = 0.05  # the built-in corpus holds out at least this share: PNMI needs held-out phones


@dataclass(frozen=True)
class CorpusData:
    """The built-in corpus with `valid_percent` (and `test_percent`) of it held out."""

    corpus: CorpusSettings
    valid_percent: float
    test_percent: float = field(default=0.0, metadata=OMIT_DEFAULT)
    jobs: int = field(default=0, metadata=RUN_ONLY)  # synthesis processes, 0: every core


@dataclass(frozen=True)
class AudioData:
    """The user's audio (the `audio` source, counted by content), split with `seed`."""

    valid_percent: float
    seed: int
    test_percent: float = field(default=0.0, metadata=OMIT_DEFAULT)
    jobs: int = field(default=0, metadata=RUN_ONLY)  # decoding processes, 0: every core


def all_jobs(jobs: int) -> int:
    """CPU processes for `jobs` (0: every core)."""
    return jobs or os.cpu_count() or 1


def make_corpus_data(inputs: WorkLayout, out: Path, settings: CorpusData) -> None:
    """The built-in corpus in `out`; its held-out share is at least MIN_CORPUS_HELDOUT."""
    c = settings.corpus
    heldout = max(settings.valid_percent + settings.test_percent, MIN_CORPUS_HELDOUT)
    make_corpus(out, c.hours, tuple(c.languages), c.seed, heldout, jobs=all_jobs(settings.jobs))
    if settings.test_percent:
        split_off_test(out, settings.test_percent / (settings.valid_percent + settings.test_percent), c.seed)


def scan_user_audio(inputs: WorkLayout, out: Path, settings: AudioData) -> None:
    """Manifests of the user's audio in `out`; bad files are listed in rejected.tsv and said."""
    root = inputs.source("audio")
    heldout = settings.valid_percent + settings.test_percent
    result = scan_audio(root, valid_percent=heldout, seed=settings.seed, jobs=settings.jobs or None,
                        journal=inputs.scan_journal)
    write_scan(result, root, out)
    if result.rejected:
        total = len(result.rejected) + len(result.train) + len(result.valid)
        reasons = "; ".join(f"{rel}: {reason}" for rel, reason in result.rejected[:2])
        print(f"[data] {len(result.rejected)} of {total} files left out ({reasons}"
              f"{'; ...' if len(result.rejected) > 2 else ''}); all of them with their reasons: "
              f"{inputs.rejected()}")
    if settings.test_percent:
        split_off_test(out, settings.test_percent / heldout, settings.seed)


def follow_corpus(inputs: WorkLayout, out: Path, settings: CorpusData) -> None:
    """A done corpus: its manifests point at data/wav wherever the work folder now is."""
    reroot(inputs, inputs.corpus_audio())


def follow_user_audio(inputs: WorkLayout, out: Path, settings: AudioData) -> None:
    """A done data stage of the user's audio: its manifests follow the audio to where it is now, and the
    alignments are checked against them (after the scan, before any feature)."""
    reroot(inputs, inputs.source("audio"))
    check_alignments(inputs)


def reroot(inputs: WorkLayout, root: Path) -> None:
    """Point the manifests' first line at `root`, where the audio is now (a moved corpus or work folder
    is not a change of data)."""
    for split in inputs.splits():
        reroot_manifest(inputs.manifest(split), root)


def check_alignments(inputs: WorkLayout) -> None:
    """The user's alignments against the held-out manifests: each aligned utterance as long as its
    audio, and the valid split aligned when there is one."""
    source = inputs.source("alignments")
    if source is None:
        return
    for split in HELDOUT:
        if split not in inputs.splits():
            continue
        manifest = read_manifest(inputs.manifest(split))
        uids = [manifest.utterance_id(i) for i in range(len(manifest))]
        aligned = check_alignment_lengths(manifest, load_alignments(source, uids), source)
        if split == "valid" and uids and not aligned:
            raise ValueError(f"alignments: {source} aligns none of the {len(uids)} valid utterances (such as "
                             f"{uids[0]!r}); utterances are named by their path under audio_dir without the "
                             "extension: give the alignments of this audio")
