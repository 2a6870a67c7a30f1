"""A stage, declared: its name, its typed settings, its named inputs and a pure run function.

The engine (stages.py) derives everything else from the declaration: the hash (settings that
decide the output, the user inputs' content, the outputs of the stages read), the dependency
edges, and what the stage may open (a WorkLayout limited to its inputs).
"""
from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from pretrain.typed_settings import budget_settings, hashed_settings

from .layout import WorkLayout

Run = Callable[[WorkLayout, Path, Any], None]  # run(inputs, out, settings)


@dataclass(frozen=True)
class Source:
    """A user's input a stage reads (audio, alignments, transcripts, a teacher), counted by its content
    (`fingerprint()`, computed once). Not `hashed`: read to check the stage's output (alignments against
    the manifests), or already counted through an input (the teacher of a layer labelling)."""

    path: Path | None
    fingerprint: Callable[[], str]
    hashed: bool = True

    def __post_init__(self):
        object.__setattr__(self, "fingerprint", functools.cache(self.fingerprint))


@dataclass
class Stage:
    """One step of a pipeline.

    `run(inputs, out, settings)` writes the stage's output into `out`, reading only through
    `inputs`: the work layout limited to `reads` (stages whose outputs it reads) and `sources` (user
    paths). `settings` is a dataclass: its fields decide the output and enter the hash, except those
    marked RUN_ONLY (threads, device), DERIVED (fixed by an input already hashed) and BUDGET
    (`max_updates`: raising it continues a resumable stage instead of starting over).
    `hash_reads`, when given, are the reads the hash covers (earlier versions hashed fewer: a read
    whose hash reaches this stage through another read), so upgrading restarts nothing.

    A `resumable` stage (training) is continued in place after a crash; a `keep` stage (exports) and a
    resumable one are moved aside, not deleted, when redone; a `shared` stage runs on every torchrun
    worker, each on its shard. `refresh(inputs, out, settings)` runs each time the stage is done (run
    now or skipped): it follows changes that are not changes (a corpus moved) and checks the output
    against inputs that do not decide it (alignments against the manifests).
    """

    name: str
    run: Run
    settings: Any
    reads: tuple[str, ...] = ()
    sources: dict[str, Source] = field(default_factory=dict)
    hash_reads: tuple[str, ...] | None = None
    resumable: bool = False
    keep: bool = False
    shared: bool = False
    refresh: Run | None = None

    def hashed_reads(self) -> tuple[str, ...]:
        return self.reads if self.hash_reads is None else self.hash_reads

    def settings_record(self) -> dict:
        """What the hash covers of this stage's own: its settings and its user inputs' fingerprints."""
        return {**hashed_settings(self.settings),
                **{name: s.fingerprint() for name, s in self.sources.items() if s.hashed}}

    def budget(self) -> dict:
        return budget_settings(self.settings)

    def inputs(self, layout: WorkLayout) -> WorkLayout:
        """What `run` may open: its own folder, the stages it reads, its user paths."""
        return layout.for_stage(self.name, self.reads, {name: s.path for name, s in self.sources.items()})


def digest(payload: dict) -> str:
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def content_source(path: str | Path | None, hashed: bool = True) -> Source:
    """A user's file or folder counted by content (pipelines/fingerprint.py); "" when not given."""
    from .fingerprint import content_fingerprint

    text = str(path) if path else ""
    return Source(Path(text) if text else None, lambda: content_fingerprint(text), hashed)
