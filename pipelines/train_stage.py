"""The pretraining stages (it1-train, it2-train): the trainer on the data stage's manifests and the
iteration's labels, resumed after a crash, continued when `max_updates` is raised."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pretrain.model_config import MaskConfig, ModelConfig
from pretrain.train_config import TrainConfig
from pretrain.typed_settings import DERIVED

from .layout import WorkLayout


@dataclass(frozen=True)
class TrainSettings:
    """Every resolved setting that decides the weights (defaults included); `train.max_updates` is the
    budget, and the train settings that only decide how a run goes are not hashed."""

    iteration: int = field(metadata=DERIVED)
    model: ModelConfig = field(default_factory=ModelConfig)
    mask: MaskConfig = field(default_factory=MaskConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def pretrain(inputs: WorkLayout, out: Path, settings: TrainSettings) -> None:
    from pretrain.trainer import train

    data = inputs.manifest("train").parent
    train(data, [inputs.labels(settings.iteration)], out, settings.model, settings.train, mask_config=settings.mask)
