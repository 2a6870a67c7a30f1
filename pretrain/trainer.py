"""The training loop, top to bottom: lr, micro-batches, forward, loss, backward,
normalise, clip, step, log, validate, save.

Gradients of one update are summed over `update_freq` micro-batches on every
worker and divided by the number of masked frames of the whole update (all
micro-batches, all workers), as fairseq does; so 2 workers with batch B and 1
worker with accumulation 2 take the same step. Unmasked accuracy falling while
masked accuracy rises is expected: the unmasked loss weight is 0 in the paper.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from clustering.manifest import read_manifest

from .checkpoint import load_latest, save_best, save_checkpoint
from .config import MaskConfig, ModelConfig
from .data import Batch, BatchLoader, LabelledAudio, plan_batches, worker_batches
from .distributed import Workers, setup_workers, teardown_workers
from .loss import hubert_loss
from .model import HubertPretrain
from .model_io import model_state
from .train_config import TrainConfig

STATS = ("masked_ce", "unmasked_ce", "num_masked", "num_unmasked", "masked_correct",
         "unmasked_correct", "feature_penalty", "audio_samples", "batches", "stop_requests")
STOP = STATS.index("stop_requests")  # summed over workers with the other statistics: all stop together
COLLAPSE_SHARE = 20  # predicting at most 1/20 of the units at validation is reported as a collapse
UNMASKED_NOTE = ("note: unmasked accuracy may fall while masked accuracy rises; this is expected, "
                 "the unmasked loss weight is 0 (the paper's setting)")


class TrainingError(RuntimeError):
    pass


class Preempted(TrainingError):
    """SIGTERM arrived: the update in flight finished, a checkpoint was saved, training stopped."""


class StopRequest:
    """Turns SIGTERM (preemption, `kill`) into a request checked once per update, in the main thread."""

    def __init__(self):
        self.signal_name = ""
        self._previous = None

    def __enter__(self):
        try:
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # not the main thread: leave signals alone
            self._previous = None
        return self

    def _handle(self, number, frame):
        self.signal_name = signal.Signals(number).name

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
        return False


@dataclass
class TrainResult:
    update: int
    checkpoint_dir: Path
    history: list[dict] = field(default_factory=list)  # every logged and validation record


def lr_at(update: int, config: TrainConfig) -> float:
    """Linear warm-up to `lr` over warmup_updates, then linear decay to 0 at max_updates."""
    if update < config.warmup_updates:
        return config.lr * (update + 1) / config.warmup_updates
    remaining = config.max_updates - update
    return config.lr * max(0.0, remaining / max(1, config.max_updates - config.warmup_updates))


class MicroBatches:
    """This worker's endless stream of micro-batches, epoch after epoch, from a cursor."""

    def __init__(self, data: LabelledAudio, config: TrainConfig, workers: Workers, epoch: int, position: int,
                 spec: tuple[tuple[int, int], ...]):
        self.data, self.config, self.workers, self.spec = data, config, workers, spec
        self.epoch, self.position = epoch, position
        self._iterator = None

    def _open(self):
        c = self.config
        plan = plan_batches([self.data.size(i) for i in range(len(self.data))], c.max_tokens,
                            c.max_sample_size, c.seed, self.epoch)
        mine = worker_batches(plan, self.workers.rank, self.workers.world)
        if not mine:
            raise TrainingError(f"{len(plan)} batches cannot be shared by {self.workers.world} workers; "
                                "lower max_tokens or use fewer workers")
        if self.position >= len(mine):  # resumed exactly at the end of an epoch
            self.epoch, self.position = self.epoch + 1, 0
            return self._open()
        loader = BatchLoader(self.data, mine[self.position:], self.epoch, c.crop, c.max_sample_size, c.seed,
                             self.spec)
        self._iterator = iter(torch.utils.data.DataLoader(
            loader, batch_size=None, shuffle=False, num_workers=c.num_workers,
            persistent_workers=False, prefetch_factor=2 if c.num_workers else None))
        self._left = len(mine) - self.position

    def next(self) -> Batch:
        if self._iterator is None or self._left == 0:
            if self._iterator is not None:
                self.epoch, self.position = self.epoch + 1, 0
            self._open()
        batch = next(self._iterator)
        self.position += 1
        self._left -= 1
        return batch


def train(manifest_dir: str | Path, label_dirs: list[str | Path], out_dir: str | Path,
          model_config: ModelConfig, config: TrainConfig, init_from: str | Path | None = None,
          log=print, mask_config: MaskConfig | None = None) -> TrainResult:
    """Pretrain on SPLIT.tsv manifests in `manifest_dir` (train, valid) and the label sets in
    `label_dirs`; checkpoints and logs go to `out_dir`. Resumes from `out_dir/checkpoints`
    when it holds a checkpoint (made with the same model and masking settings, which every
    checkpoint records); `init_from` starts a new run from existing weights."""
    workers = setup_workers(config.device)
    settings = (model_config, mask_config or MaskConfig())
    try:
        with StopRequest() as stop:
            return _train(Path(manifest_dir), [Path(d) for d in label_dirs], Path(out_dir),
                          settings, config, init_from, workers, log, stop)
    finally:
        teardown_workers(workers)


def _train(manifest_dir, label_dirs, out_dir, settings: tuple[ModelConfig, MaskConfig], config, init_from,
           workers, log, stop: StopRequest) -> TrainResult:
    model_config, mask_config = settings
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_dir = out_dir / "checkpoints"
    train_data = LabelledAudio(manifest_dir / "train.tsv", label_dirs, config.min_sample_size)
    valid_data = _valid_data(manifest_dir, label_dirs, config, log if workers.is_main else lambda m: None)
    if workers.is_main:
        log(f"train: {len(train_data)} utterances ({train_data.dropped} under {config.min_sample_size} "
            f"samples dropped); units per label set {train_data.num_units}")
    torch.manual_seed(config.seed)
    model = HubertPretrain(model_config, train_data.num_units, mask_config).to(workers.device)
    if init_from:
        _load_encoder_weights(model, init_from)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, betas=config.betas,
                                  eps=config.eps, weight_decay=config.weight_decay)
    scaler = torch.amp.GradScaler(workers.device.type, enabled=config.precision == "fp16")
    update, epoch, position, best = 0, 0, 0, math.inf
    state = load_latest(ckpt_dir, log)
    if state is not None:
        _check_same_model(state, model, ckpt_dir)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        update, epoch, position, best = state["update"], state["epoch"], state["position"], state["best_valid"]
        log(f"resuming from update {update}")
        _note_schedule_change(state.get("train_config", {}), config, update, log)
    net = model
    if workers.world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[workers.device.index] if workers.device.type == "cuda" else None,
            find_unused_parameters=model_config.layerdrop > 0)
    stream = MicroBatches(train_data, config, workers, epoch, position, model_config.conv_spec)
    logger = _Logger(out_dir, workers.is_main, log, config.penalty_weight)
    if workers.is_main and update == 0:
        log(UNMASKED_NOTE)
    bar = tqdm(total=config.max_updates, initial=update, desc="train", unit="upd",
               disable=not workers.is_main, mininterval=2)
    window, bad, begin, data_seconds = torch.zeros(len(STATS), dtype=torch.float64), 0, time.time(), 0.0
    while update < config.max_updates:
        lr = lr_at(update, config)
        for group in optimizer.param_groups:
            group["lr"] = lr
        net.train()
        stats = torch.zeros(len(STATS), dtype=torch.float64)
        for micro in range(config.update_freq):
            waited = time.time()
            batch = stream.next()
            data_seconds += time.time() - waited
            sync = micro == config.update_freq - 1 or workers.world == 1
            with contextlib.nullcontext() if sync else net.no_sync():
                result = _forward(net, batch, config, workers.device)
                scaler.scale(result.loss).backward()
            stats += _stats(result, batch)
        stats[STOP] = 1.0 if stop.signal_name else 0.0
        stats = workers.sum(stats).cpu()
        scaler.unscale_(optimizer)
        for p in model.parameters():
            if p.grad is not None:  # sum over the update / masked frames of the update
                p.grad.mul_(workers.world / max(1.0, stats[2].item()))
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip_norm)
        update += 1
        if torch.isfinite(grad_norm):
            scaler.step(optimizer)
            bad = 0
        else:
            bad += 1
            logger.skipped += 1
            log(f"update {update}: non-finite loss or gradient, update skipped "
                f"({bad} in a row, {logger.skipped} in all)")
            if bad >= config.max_bad_updates:
                raise TrainingError(f"{bad} non-finite updates in a row at update {update}; lower the "
                                    "lr, use bf16 instead of fp16, or check the data")
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        window += stats
        bar.update(1)
        if update % config.log_every == 0 or update == config.max_updates:
            record = logger.train_record(update, lr, window, grad_norm.item(), time.time() - begin, data_seconds)
            bar.set_postfix(loss=f"{record['loss']:.3f}", acc_m=f"{record['masked_acc']:.3f}",
                            audio_s_per_s=f"{record['audio_s_per_s']:.1f}")
            window, begin, data_seconds = torch.zeros(len(STATS), dtype=torch.float64), time.time(), 0.0
        if valid_data is not None and (update % config.valid_every == 0 or update == config.max_updates):
            record = logger.valid_record(update, validate(net, model, valid_data, config, workers))
            if record["loss"] < best:  # best.pt now, whether or not this update is saved
                best = record["loss"]
                if workers.is_main:
                    save_best({**model_state(model), "update": update, "best_valid": best}, ckpt_dir)
        stopping = stats[STOP].item() > 0
        if update % config.save_every == 0 or update == config.max_updates or stopping:
            _save(lambda: _full_state(model, optimizer, scaler, stream, update, best, config),
                  ckpt_dir, update, config.keep_last, workers)
        if stopping:
            bar.close()
            raise Preempted(f"stopped by {stop.signal_name or 'SIGTERM on another worker'} after update "
                            f"{update}; checkpoint saved in {ckpt_dir}; rerun the same command to continue")
    bar.close()
    return TrainResult(update, ckpt_dir, logger.history)


def _save(state, ckpt_dir: Path, update: int, keep_last: int, workers: Workers) -> None:
    """Worker 0 writes the checkpoint `state()` builds; the others wait for it."""
    if workers.is_main:
        save_checkpoint(state(), ckpt_dir, update, keep_last)
    if workers.world > 1:
        torch.distributed.barrier()


def _full_state(model, optimizer, scaler, stream: MicroBatches, update: int, best: float,
                config: TrainConfig) -> dict:
    """Everything an exact resume needs: weights, optimizer, scaler, data cursor, schedule."""
    return {**model_state(model), "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
            "update": update, "epoch": stream.epoch, "position": stream.position, "best_valid": best,
            "train_config": dataclasses.asdict(config)}


def _check_same_model(state: dict, model: HubertPretrain, ckpt_dir: Path) -> None:
    """ValueError naming the first model or masking setting a checkpoint differs in from this run."""
    for key, ours in (("model_config", model.config), ("mask_config", model.mask_config)):
        saved, wanted = state.get(key, {}), dataclasses.asdict(ours)
        differ = [name for name in wanted if name in saved and _plain(saved[name]) != _plain(wanted[name])]
        if differ:
            name = differ[0]
            raise ValueError(f"{ckpt_dir}: its checkpoints were trained with {name} = {saved[name]}, this run "
                             f"asks for {wanted[name]}; resume with the same settings or train into another "
                             "folder")


def _plain(value):
    """Tuples and lists compare equal (a checkpoint stores lists)."""
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value


def _note_schedule_change(saved: dict, config: TrainConfig, update: int, log) -> None:
    """Say so when a resumed run's schedule differs from the checkpoint's (max_updates raised)."""
    changed = [f"{k} {saved[k]} -> {v}" for k, v in dataclasses.asdict(config).items()
               if k in ("max_updates", "warmup_updates", "lr") and k in saved and saved[k] != v]
    if changed:
        log(f"schedule changed since the checkpoint ({', '.join(changed)}): the learning rate now follows "
            f"the new schedule from update {update}")


def _valid_data(manifest_dir: Path, label_dirs: list[Path], config: TrainConfig, log) -> LabelledAudio | None:
    """The valid split, or None (said once) when there is none to validate on."""
    path = manifest_dir / "valid.tsv"
    usable = path.exists() and any(n >= config.min_sample_size for n in read_manifest(path).sizes)
    if not usable:
        log(f"note: no validation: {path} has no utterance of at least {config.min_sample_size} samples, "
            "so there is no valid loss and no best.pt (set valid_percent > 0 for a valid split)")
        return None
    return LabelledAudio(path, label_dirs, config.min_sample_size)


def _load_encoder_weights(model: HubertPretrain, source) -> None:
    from .model_io import load_encoder

    encoder = load_encoder(source)
    if dataclasses.asdict(encoder.config) != dataclasses.asdict(model.config):
        raise ValueError(f"{source}: its model settings differ from this run's; use the same preset")
    model.encoder.load_state_dict(encoder.state_dict())


def _forward(net, batch: Batch, config: TrainConfig, device: torch.device):
    """Forward + loss (summed, not normalised) of one micro-batch; masks and dropout seeded by the batch."""
    torch.manual_seed(batch.seed)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(config.precision)
    with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
        out = net(batch.wav.to(device), batch.lengths.to(device))
    targets = [t.to(device) for t in batch.targets]
    return hubert_loss(out, targets, config.masked_weight, config.unmasked_weight,
                       config.penalty_weight, normalizer=1.0)


def _stats(result, batch: Batch) -> torch.Tensor:
    values = [result.masked_ce, result.unmasked_ce, result.num_masked, result.num_unmasked,
              result.masked_correct, result.unmasked_correct, result.feature_penalty * result.num_masked,
              batch.lengths.sum(), 1, 0]
    return torch.tensor([float(v) for v in values], dtype=torch.float64)


@torch.no_grad()
def validate(net, model: HubertPretrain, data: LabelledAudio, config: TrainConfig, workers: Workers) -> dict:
    """Loss and accuracies on the valid split, plus collapse detectors: per-layer feature
    variance and how many units the model predicts at all."""
    net.eval()
    plan = plan_batches([data.size(i) for i in range(len(data))], config.max_tokens,
                        config.max_sample_size, config.seed, epoch=0)
    mine = [(i, items) for i, items in enumerate(plan) if i % workers.world == workers.rank]
    loader = BatchLoader(data, mine, 0, config.crop, config.max_sample_size, config.seed, model.config.conv_spec)
    stats = torch.zeros(len(STATS), dtype=torch.float64)
    variance = torch.zeros(model.config.num_hidden_layers, dtype=torch.float64)
    used = torch.zeros(model.num_units[0], dtype=torch.float64)
    for index in range(len(loader)):
        batch = loader[index]
        result = _forward(model, batch, config, workers.device)
        stats += _stats(result, batch)
        out = model.encoder(batch.wav.to(workers.device), batch.lengths.to(workers.device))
        keep = ~out.padding
        for k, layer in enumerate(out.layers):
            variance[k] += layer[keep].float().var(0).mean().item() * keep.sum().item()
        logits = model(batch.wav.to(workers.device), batch.lengths.to(workers.device), mask=False).logits[0]
        used += torch.bincount(logits[keep].argmax(-1).cpu(), minlength=used.numel()).double()
    stats, variance, used = workers.sum(stats).cpu(), workers.sum(variance).cpu(), workers.sum(used).cpu()
    frames = max(1.0, used.sum().item())
    return {**_summary(stats, config.penalty_weight), "layer_variance": [round(v / frames, 5) for v in variance.tolist()],
            "units_predicted": int((used > 0).sum().item()), "num_units": model.num_units[0]}


def _summary(stats: torch.Tensor, penalty_weight: float) -> dict:
    s = dict(zip(STATS, stats.tolist()))
    masked = max(1.0, s["num_masked"])
    return {"loss": (s["masked_ce"] + penalty_weight * s["feature_penalty"]) / masked,
            "masked_ce": s["masked_ce"] / masked,
            "masked_acc": s["masked_correct"] / masked,
            "unmasked_acc": s["unmasked_correct"] / max(1.0, s["num_unmasked"]),
            "feature_penalty": s["feature_penalty"] / masked}


class _Logger:
    """JSON lines (train_log.jsonl) and TensorBoard (tb/) on the main worker."""

    def __init__(self, out_dir: Path, active: bool, log, penalty_weight: float):
        self.active, self.log, self.history, self.skipped = active, log, [], 0
        self.penalty_weight = penalty_weight
        self.path = out_dir / "train_log.jsonl"
        self.writer = None
        if active:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(out_dir / "tb"))

    def _emit(self, record: dict, prefix: str) -> dict:
        if self.active:
            with open(self.path, "a") as f:
                f.write(json.dumps(record) + "\n")
            for key, value in record.items():
                if isinstance(value, (int, float)) and key != "update":
                    self.writer.add_scalar(f"{prefix}/{key}", value, record["update"])
            self.writer.flush()
        self.history.append(record)
        return record

    def train_record(self, update: int, lr: float, window: torch.Tensor, grad_norm: float, seconds: float,
                     data_seconds: float) -> dict:
        s = dict(zip(STATS, window.tolist()))
        record = {"split": "train", "update": update, "lr": lr, **_summary(window, self.penalty_weight),
                  "grad_norm": grad_norm, "audio_s_per_s": s["audio_samples"] / 16000 / max(seconds, 1e-9),
                  "data_share": data_seconds / max(seconds, 1e-9), "skipped": self.skipped}
        return self._emit(record, "train")

    def valid_record(self, update: int, metrics: dict) -> dict:
        record = self._emit({"split": "valid", "update": update, **metrics}, "valid")
        self.log(f"valid @ {update}: loss {record['loss']:.3f}, masked acc {record['masked_acc']:.3f}, "
                 f"unmasked acc {record['unmasked_acc']:.3f}, units predicted "
                 f"{record['units_predicted']}/{record['num_units']}, last-layer variance "
                 f"{record['layer_variance'][-1]:.4f}")
        if self.active and record["units_predicted"] <= max(1, record["num_units"] // COLLAPSE_SHARE):
            self.log(f"warning: the model predicts only {record['units_predicted']} of {record['num_units']} units on "
                     "the valid split, the sign of a collapse (every frame gets the most frequent unit); "
                     "check the learning rate and the data, or train longer if it is early")
        return record
