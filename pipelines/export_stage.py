"""The export stage: the iteration-2 model as Hugging Face folders fit for the language.

export/encoder always; export/ctc with the characters of the transcripts (the user's, or the
built-in corpus's); export/classification with the user's class names. No vocabulary or label set
is invented. The newest readable checkpoint is exported, the one the later stages also read.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pretrain.typed_settings import DERIVED

from .layout import WorkLayout


@dataclass(frozen=True)
class ExportSettings:
    labels: tuple[str, ...] = ()  # class names; the transcripts are the `transcripts` source
    # no user transcripts: the built-in corpus's (data/transcripts.tsv); said by the transcripts source
    built_in_transcripts: bool = field(default=False, metadata=DERIVED)


def export_models(inputs: WorkLayout, out: Path, settings: ExportSettings) -> None:
    from pretrain.checkpoint import latest_path
    from pretrain.hf import export_hf
    from pretrain.model_io import load_encoder
    from pretrain.vocabulary import transcript_characters

    encoder = load_encoder(latest_path(inputs.checkpoints(2)))
    export_hf(encoder, inputs.export("encoder"), "none")
    transcripts = inputs.source("transcripts") or (
        inputs.corpus_transcripts() if settings.built_in_transcripts else None)
    if transcripts is not None:
        export_hf(encoder, inputs.export("ctc"), "ctc", vocab_tokens=transcript_characters(transcripts))
    if settings.labels:
        export_hf(encoder, inputs.export("classification"), "classification", labels=list(settings.labels))
