"""Every path in a work folder, in one place.

    WORK_DIR/
      .hubert.json  stages.json  run.lock  superseded/
      data/          SPLIT.tsv (train, valid, test), rejected.tsv; built-in corpus: wav/, SPLIT.phn.tsv,
                     transcripts.tsv
      itN-features/  feature shards        itN-kmeans/  teacher.npy (+ .json)
      itN-labels/    SPLIT.km, dict.km.txt, labels.json
      itN-train/     checkpoints/update_*.pt, best.pt, train_log.jsonl, tb/
      itN-scan/      scan.json             export/      encoder/, ctc/, classification/
      quality/       report.md, quality.json, itN/

A stage reads through a `WorkLayout` limited to what it declared (`for_stage`): asking it for
the path of a stage it did not declare raises UndeclaredInput, so a stage cannot read what its
hash does not cover.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from clustering.audio_folder import REJECTED
from clustering.labels import LABEL_INFO
from clustering.quality_report import QUALITY_JSON, REPORT
from clustering.scan_journal import JOURNAL_NAME
from clustering.synthetic.corpus import AUDIO_FOLDER, SPEAKERS, TRANSCRIPTS, alignment_file
from pretrain.run_files import BEST, CHECKPOINTS, TRAIN_LOG

from .fingerprint import CACHE_NAME
from .workdir import LOCK, ORDER, SUPERSEDED

SPLITS = ("train", "valid", "test")  # test only when the data stage made one (test_percent > 0)
HELDOUT = ("valid", "test")
TEACHER = "teacher.npy"
SCAN = "scan.json"
EXPORT_HEADS = ("encoder", "ctc", "classification")


class UndeclaredInput(RuntimeError):
    """A stage asked for a path it did not declare among its inputs (a bug in its declaration)."""


@dataclass(frozen=True)
class WorkLayout:
    """The paths of a work folder; `allowed` (stage names) limits which stages' paths it gives
    (None: all), `sources` are the user paths a stage declared (audio, alignments, ...)."""

    root: Path
    allowed: frozenset[str] | None = None
    sources: dict[str, Path | None] = field(default_factory=dict)

    def for_stage(self, name: str, reads: tuple[str, ...], sources: dict[str, Path | None]) -> "WorkLayout":
        """The layout stage `name` sees: its own folder, the stages it reads, its user paths."""
        return replace(self, allowed=frozenset((name, *reads)), sources=dict(sources))

    def stage(self, name: str) -> Path:
        if self.allowed is not None and name not in self.allowed:
            raise UndeclaredInput(f"a stage asked for {name}/, which it does not declare among its inputs "
                                  f"({', '.join(sorted(self.allowed))})")
        return self.root / name

    def source(self, name: str) -> Path | None:
        """A user path the stage declared (None when that setting is empty)."""
        if name not in self.sources:
            raise UndeclaredInput(f"a stage asked for the user path {name!r}, which it does not declare")
        return self.sources[name]

    # the work folder's own files
    @property
    def order(self) -> Path:
        return self.root / ORDER

    @property
    def lock(self) -> Path:
        return self.root / LOCK

    @property
    def superseded(self) -> Path:
        return self.root / SUPERSEDED

    @property
    def fingerprint_cache(self) -> Path:
        """The audio folder's file digests by (path, size, mtime): a rerun reads only changed files."""
        return self.root / CACHE_NAME

    @property
    def scan_journal(self) -> Path:
        """The folder scan's per-file results, kept outside data/ so a redone scan resumes from them."""
        return self.root / JOURNAL_NAME

    # data
    def manifest(self, split: str) -> Path:
        return self.stage("data") / f"{split}.tsv"

    def rejected(self) -> Path:
        """The files the data stage left out of the user's audio, with the reason for each."""
        return self.stage("data") / REJECTED

    def splits(self) -> tuple[str, ...]:
        """The splits the data stage wrote: train, valid, and test when test_percent > 0."""
        return tuple(s for s in SPLITS if s != "test" or self.manifest(s).exists())

    def corpus_audio(self) -> Path:
        return self.stage("data") / AUDIO_FOLDER

    def corpus_alignments(self, split: str) -> Path:
        """The built-in corpus's 100 Hz phones of `split` (fairseq frame-level tsv)."""
        return alignment_file(self.stage("data"), split)

    def corpus_transcripts(self) -> Path:
        return self.stage("data") / TRANSCRIPTS

    def corpus_speakers(self) -> Path:
        """The built-in corpus's speaker of each utterance (its espeak voice)."""
        return self.stage("data") / SPEAKERS

    # an iteration's teacher and model
    def features(self, iteration: int) -> Path:
        return self.stage(f"it{iteration}-features")

    def teacher(self, iteration: int) -> Path:
        return self.stage(f"it{iteration}-kmeans") / TEACHER

    def labels(self, iteration: int) -> Path:
        return self.stage(f"it{iteration}-labels")

    def label_file(self, iteration: int, split: str) -> Path:
        return self.labels(iteration) / f"{split}.km"

    def label_info(self, iteration: int) -> Path:
        return self.labels(iteration) / LABEL_INFO

    def training(self, iteration: int) -> Path:
        return self.stage(f"it{iteration}-train")

    def checkpoints(self, iteration: int) -> Path:
        return self.training(iteration) / CHECKPOINTS

    def best_checkpoint(self, iteration: int) -> Path:
        return self.checkpoints(iteration) / BEST

    def train_log(self, iteration: int) -> Path:
        return self.training(iteration) / TRAIN_LOG

    def scan(self, iteration: int) -> Path:
        return self.stage(f"it{iteration}-scan") / SCAN

    # what a run ends with
    def export(self, head: str = "") -> Path:
        return self.stage("export") / head if head else self.stage("export")

    def quality(self) -> Path:
        return self.stage("quality")

    def report(self) -> Path:
        """quality/report.md: MFCC teacher vs iteration 1 vs iteration 2."""
        return self.quality() / REPORT

    def quality_record(self) -> Path:
        """quality/quality.json: the report's rows, intervals, answers per measure and curves."""
        return self.quality() / QUALITY_JSON

    def teacher_quality(self, iteration: int) -> Path:
        """quality/itN/quality.json: the iteration's teacher, and its model's layer scan."""
        return self.quality() / f"it{iteration}" / QUALITY_JSON
