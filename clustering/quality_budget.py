"""The budget every row of a quality report gets: one dataclass, its defaults only here.

A row is one kind of features (MFCC, a layer of a model). Every row of a report is measured
with the same budget, so a difference between rows is a difference between their features:
the same seconds of train audio (the same utterances) for k-means and for the phone probe,
the same number of units, k-means backend and seed, every utterance of the report split, and
the same bootstrap draws of those utterances.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class QualityBudget:
    num_units: int = 100  # k-means units of every row (the paper's Figure 2 and MFCC teacher: 100)
    fit_seconds: float = 600.0  # train audio (whole utterances, seeded) for every row's k-means and probe
    kmeans_backend: str = "faiss"  # the same backend for every row, on every machine
    seed: int = 0  # train utterances, k-means, ABX subsampling, probe and bootstrap draws
    resamples: int = 1000  # paired bootstrap resamples of the report utterances (95% basic intervals)
    abx_max_items: int = 10  # ABX: items kept per (phone, context, speaker) group (ZeroSpeech's max_size_group)
    abx_max_x_speakers: int = 5  # ABX across speaker: X speakers per (A, B) group (ZeroSpeech's max_x_across)
    probe_steps: int = 300  # phone probe: Adam updates of the linear CTC head
    probe_batch: int = 16  # phone probe: crops per update
    probe_crop_seconds: float = 1.0  # phone probe: training crops of whole phones, at most this long
    probe_lr: float = 0.5  # phone probe: Adam's peak learning rate, cosine-decayed to 0

    def __post_init__(self):
        for name in ("num_units", "resamples", "abx_max_items", "abx_max_x_speakers", "probe_steps", "probe_batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"quality budget: {name} must be at least 1, got {getattr(self, name)}")
        if not (self.fit_seconds > 0 and self.probe_lr > 0 and self.probe_crop_seconds > 0):
            raise ValueError("quality budget: fit_seconds, probe_lr and probe_crop_seconds must be positive")

    def as_dict(self) -> dict:
        return asdict(self)
