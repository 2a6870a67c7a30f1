"""Training settings: one dataclass, the paper's BASE recipe as defaults.

`hubert train ... key=value` and pipeline configs override fields by name.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from clustering.audio import SAMPLE_RATE, ConvSpec, receptive_field

from .typed_settings import BUDGET, RUN_ONLY, SettingError, at_least, from_dict, one_of, positive


@dataclass
class TrainConfig:
    # optimisation (Adam with decoupled weight decay, linear warm-up then linear decay to 0)
    lr: float = 5e-4
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6
    weight_decay: float = 0.01
    warmup_updates: int = 32_000
    max_updates: int = field(default=250_000, metadata=BUDGET)  # 400k for iteration 2; raising it continues
    clip_norm: float = 10.0
    update_freq: int = 1  # micro-batches per update per worker (gradient accumulation)
    precision: str = "fp32"  # "fp32", "bf16" or "fp16" (with loss scaling)
    max_bad_updates: int = field(default=10, metadata=RUN_ONLY)  # non-finite updates in a row before stopping
    # loss
    masked_weight: float = 1.0
    unmasked_weight: float = 0.0
    penalty_weight: float = 10.0
    # data
    max_tokens: int = 1_400_000  # samples per micro-batch per worker (87.5 s)
    min_sample_size: int = 32_000  # utterances shorter than this are dropped
    max_sample_size: int = 250_000  # longer items are cropped to this
    crop: bool = True  # crop every item to the batch's shortest (fairseq); False pads instead
    crop_multiple: int = 0  # samples; >0 rounds crops down (pads up) to a multiple so shapes repeat; 0: fairseq
    num_workers: int = field(default=1, metadata=RUN_ONLY)  # DataLoader processes (at most the usable cores)
    seed: int = 1337
    # bookkeeping: how a run goes, not what it learns (changing these never restarts training;
    # `kernels` and `compile` compute the same function, fast and reference paths agree to rounding)
    log_every: int = field(default=50, metadata=RUN_ONLY)
    valid_every: int = field(default=5_000, metadata=RUN_ONLY)
    save_every: int = field(default=5_000, metadata=RUN_ONLY)
    keep_last: int = field(default=3, metadata=RUN_ONLY)
    device: str = field(default="auto", metadata=RUN_ONLY)  # "auto": cuda when available, else cpu
    kernels: str = field(default="auto", metadata=RUN_ONLY)  # "fast", "reference" (nn.Conv1d); auto: fast on cuda
    compile: bool = field(default=False, metadata=RUN_ONLY)  # torch.compile the CNN, positional conv and layers

    def __post_init__(self):
        self.betas = tuple(self.betas)
        one_of(self, "precision", ("fp32", "bf16", "fp16"))
        one_of(self, "kernels", ("auto", "fast", "reference"))
        for name in ("lr", "eps", "clip_norm", "max_tokens", "min_sample_size", "max_sample_size"):
            positive(self, name)
        for name in ("update_freq", "max_updates", "max_bad_updates", "log_every", "valid_every", "save_every"):
            at_least(self, name, 1)
        for name in ("warmup_updates", "weight_decay", "masked_weight", "unmasked_weight", "penalty_weight",
                     "num_workers", "keep_last", "crop_multiple"):
            at_least(self, name, 0)
        if not all(0 <= b < 1 for b in self.betas):
            raise SettingError(f"betas: each must lie in [0, 1), got {self.betas}")
        if self.device != "auto" and not self.device.startswith(("cpu", "cuda")):
            raise SettingError(f"device: expected auto, cpu or cuda[:N], got {self.device!r}")


def check_runnable(config: TrainConfig, conv_spec: ConvSpec, prefix: str = "") -> None:
    """SettingError, before any work, for settings this model or machine cannot run: a crop
    (max_sample_size) or shortest utterance (min_sample_size) that gives no frame of the model's
    CNN (`conv_spec`), or a CUDA device where torch sees none. `prefix` leads each key
    ("iteration1.train.")."""
    needed = receptive_field(conv_spec)
    for name in ("min_sample_size", "max_sample_size"):
        value = getattr(config, name)
        if value < needed:
            raise SettingError(f"{prefix}{name}: {value} samples give no frame of the model: its CNN needs "
                               f"{needed} samples ({1000 * needed / SAMPLE_RATE:g} ms) per frame; set at least "
                               f"{needed}")
    check_device(config.device, f"{prefix}device")


def check_device(device: str, key: str) -> None:
    """SettingError when `device` (setting `key`) asks for a GPU that torch cannot see."""
    if not device.startswith("cuda"):
        return
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    number = device.partition(":")[2]
    index = int(number) if number.isdigit() else 0
    if index >= count:
        seen = f"only {count} GPU(s)" if count else "no GPU (no CUDA device, or no driver)"
        raise SettingError(f"{key}: {device} asked for, but torch sees {seen}; use auto (the GPU when there "
                           "is one) or cpu")


def apply_overrides(config: TrainConfig, overrides: dict, where: str = "train") -> TrainConfig:
    """A copy of `config` with `overrides` (field name -> value), each checked by type and range;
    unknown names and bad values raise SettingError naming `where.name`."""
    return from_dict(TrainConfig, {**dataclasses.asdict(config), **overrides}, where)
