"""The training loop, top to bottom: lr, micro-batches, forward, loss, backward,
normalise, clip, step, log, validate, save.

Gradients of one update are summed over `update_freq` micro-batches on every
worker and divided by the number of masked frames of the whole update (all
micro-batches, all workers), as fairseq does; so 2 workers with batch B and 1
worker with accumulation 2 take the same step. Unmasked accuracy falling while
masked accuracy rises is expected: the unmasked loss weight is 0 in the paper.

Between two logs nothing is read back from the device: statistics add up there, a
non-finite gradient norm skips its update there (fused AdamW's `found_inf`), and the
skipped updates are counted, and `max_bad_updates` in a row checked, when the log is
read (every `log_every` updates). A SIGTERM stops a single process after the update in
flight; under torchrun the workers agree at the next log read, at most `log_every`
updates later (keep log_every x step time inside the scheduler's grace period).
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from clustering.audio import SAMPLE_RATE
from clustering.heap import return_freed_memory
from clustering.manifest_arrays import open_manifest

from .batch_plan import plan_batches
from .checkpoint import checkpoint_paths, load_fused_optimizer_state, load_latest, save_best, save_checkpoint
from .run_files import CHECKPOINTS, TRAIN_LOG
from .model_config import ENCODER_SHAPE, MaskConfig, ModelConfig
from .labelled_audio import Batch, BatchLoader, LabelledAudio, PlannedBatches
from .distributed import Workers, setup_workers, teardown_workers
from .loss import hubert_loss
from .model import HubertPretrain, compile_regions, set_kernels
from .model_io import model_state
from .run_inputs import check_or_record, run_inputs
from .train_config import TrainConfig, check_runnable

STATS = ("masked_ce", "unmasked_ce", "num_masked", "num_unmasked", "masked_correct",
         "unmasked_correct", "feature_penalty")  # sums over frames, kept on the device
NUM_MASKED = STATS.index("num_masked")
HOST_STATS = ("audio_samples", "batches", "stop_requests")  # counted on the host, summed over workers at a log
COLLAPSE_SHARE = 20  # predicting at most 1/20 of the units at validation is reported as a collapse
UNMASKED_NOTE = ("note: unmasked accuracy may fall while masked accuracy rises; this is expected, "
                 "the unmasked loss weight is 0 (the paper's setting)")


class TrainingError(RuntimeError):
    pass


class Preempted(TrainingError):
    """SIGTERM arrived: the update in flight finished, a checkpoint was saved, training stopped."""


class StopRequest:
    """Turns SIGTERM (preemption, `kill`) into a host-side flag: a single process checks it after
    every update at no cost; under torchrun it is summed over workers at log reads."""

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
    """This worker's endless stream of micro-batches, epoch after epoch, from a cursor
    (epoch, position of the next batch). One DataLoader serves the whole run: its worker
    processes persist across epochs, and on CUDA its batches come pinned."""

    def __init__(self, data: LabelledAudio, config: TrainConfig, workers: Workers, epoch: int, position: int,
                 spec: tuple[tuple[int, int], ...]):
        loader = BatchLoader(data, [], 0, config.crop, config.max_sample_size, config.seed, spec,
                             config.crop_multiple)
        self.planned = PlannedBatches(loader, config.max_tokens, workers.rank, workers.world)
        if not self.planned.epoch(epoch):
            raise TrainingError(f"too few batches to share among {workers.world} workers; "
                                "lower max_tokens or use fewer workers")
        if position >= len(self.planned.epoch(epoch)):  # resumed exactly at the end of an epoch
            epoch, position = epoch + 1, 0
        self.epoch, self.position = epoch, position
        processes = min(config.num_workers, _usable_cores())
        self._loader = torch.utils.data.DataLoader(
            self.planned, batch_size=None, sampler=_Cursor(self.planned, epoch, position),
            num_workers=processes, pin_memory=workers.device.type == "cuda",
            persistent_workers=processes > 0, prefetch_factor=2 if processes else None,
            worker_init_fn=_start_loader_worker)
        self._iterator = None

    def next(self) -> Batch:
        if self._iterator is None:
            self._iterator = iter(self._loader)
        batch = next(self._iterator)
        if isinstance(batch, Exception):  # an unreadable audio file, returned by the loader (one line)
            raise batch
        self.position += 1
        if self.position == len(self.planned.epoch(self.epoch)):
            self.epoch, self.position = self.epoch + 1, 0
        return batch

    def close(self) -> None:
        """Stop the loader's worker processes (a persistent loader holds its iterator too)."""
        self._iterator = self._loader = None


def _start_loader_worker(worker_id: int) -> None:
    """A loader worker gives its freed audio and batch buffers back to the system, so its memory stays at
    what one batch needs (it holds no utterance list: see LabelledAudio), and it ignores SIGTERM: Slurm
    and `kill -- -PGID` signal the whole process group, and the trainer must finish its update, save a
    checkpoint and exit 143 with its loaders alive."""
    return_freed_memory()
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


class _Cursor:
    """Sampler of the keys of this worker's batches (epoch, index, items) from a cursor (epoch,
    position) onwards, forever; it plans each epoch in the trainer's process (see PlannedBatches)."""

    def __init__(self, planned: PlannedBatches, epoch: int, position: int):
        self.planned, self.epoch, self.position = planned, epoch, position

    def __iter__(self):
        epoch, position = self.epoch, self.position
        while True:
            for index in range(position, len(self.planned.epoch(epoch))):
                yield self.planned.key(epoch, index)
            epoch, position = epoch + 1, 0


def train(manifest_dir: str | Path, label_dirs: list[str | Path], out_dir: str | Path,
          model_config: ModelConfig, config: TrainConfig, init_from: str | Path | None = None,
          log=print, mask_config: MaskConfig | None = None) -> TrainResult:
    """Pretrain on SPLIT.tsv manifests in `manifest_dir` (train, valid) and the label sets in
    `label_dirs`; checkpoints and logs go to `out_dir`. Resumes from `out_dir/checkpoints`
    when it holds a checkpoint (made with the same model and masking settings, which every
    checkpoint records); `init_from` starts a new run from existing weights."""
    check_runnable(config, model_config.conv_spec)
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
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_dir = out_dir / CHECKPOINTS
    train_data = LabelledAudio(manifest_dir / "train.tsv", label_dirs, config.min_sample_size)
    valid_data = _valid_data(manifest_dir, label_dirs, config, log if workers.is_main else lambda m: None)
    if workers.is_main:
        log(f"train: {len(train_data)} utterances ({train_data.dropped} under {config.min_sample_size} "
            f"samples dropped); units per label set {train_data.num_units}")
    if workers.is_main:
        check_or_record(out_dir, run_inputs(manifest_dir, label_dirs, settings, config, init_from),
                        resuming=bool(checkpoint_paths(ckpt_dir)))
    run = _Run.start(train_data.num_units, settings, config, init_from, workers, ckpt_dir, log)
    model, optimizer, scaler, update, best = run.model, run.optimizer, run.scaler, run.update, run.best
    stream = MicroBatches(train_data, config, workers, run.epoch, run.position, model.config.conv_spec)
    logger = _Logger(out_dir, workers.is_main, log, config.penalty_weight)
    if workers.is_main and update == 0:
        log(UNMASKED_NOTE)
    bar = tqdm(total=config.max_updates, initial=update, desc="train", unit="upd",
               disable=not workers.is_main, mininterval=2)
    window = _Window(workers.device, update)
    try:
        while update < config.max_updates:
            lr = lr_at(update, config)
            for group in optimizer.param_groups:
                group["lr"] = lr
            run.net.train()
            stats = _accumulate(run.net, stream, config, workers, scaler, window)
            grad_norm, bad = _step(model, optimizer, scaler, stats, config, workers)
            window.add(stats, grad_norm, bad)
            update += 1
            bar.update(1)
            stopping = bool(stop.signal_name) if workers.world == 1 else False
            if update % config.log_every == 0 or update == config.max_updates:
                totals = window.read(workers, bool(stop.signal_name), update)
                record = logger.train_record(update, lr, totals)
                _check_bad_updates(totals, config, update, log)
                stopping = stopping or totals["stop_requests"] > 0
                bar.set_postfix(loss=f"{record['loss']:.3f}", acc_m=f"{record['masked_acc']:.3f}",
                                audio_s_per_s=f"{record['audio_s_per_s']:.1f}")
            if valid_data is not None and (update % config.valid_every == 0 or update == config.max_updates):
                record = logger.valid_record(update, validate(run.net, model, valid_data, config, workers))
                if record["loss"] < best:  # best.pt now, whether or not this update is saved
                    best = record["loss"]
                    if workers.is_main:
                        save_best({**model_state(model), "update": update, "best_valid": best}, ckpt_dir)
            if update % config.save_every == 0 or update == config.max_updates or stopping:
                _save(lambda: _full_state(model, optimizer, scaler, stream, update, best, config),
                      ckpt_dir, update, config.keep_last, workers)
            if stopping:
                raise Preempted(f"stopped by {stop.signal_name or 'SIGTERM on another worker'} after update "
                                f"{update}; checkpoint saved in {ckpt_dir}; rerun the same command to continue")
    finally:
        bar.close()
        stream.close()
    return TrainResult(update, ckpt_dir, logger.history)


@dataclass
class _Run:
    """The model (and its DDP wrapper `net`), optimizer and scaler of a run, at its first update."""
    model: HubertPretrain
    net: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    update: int = 0
    epoch: int = 0
    position: int = 0
    best: float = math.inf

    @classmethod
    def start(cls, num_units: list[int], settings: tuple[ModelConfig, MaskConfig], config: TrainConfig,
              init_from, workers: Workers, ckpt_dir: Path, log) -> "_Run":
        """A fresh run (from `init_from`'s weights if given) or the newest checkpoint's."""
        model_config, mask_config = settings
        torch.manual_seed(config.seed)
        model = HubertPretrain(model_config, num_units, mask_config).to(workers.device)
        if init_from:
            _load_encoder_weights(model, init_from)
        # fused: one kernel for the whole step, and it skips a step on the device when found_inf is 1
        optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, betas=config.betas,
                                      eps=config.eps, weight_decay=config.weight_decay, fused=True)
        run = cls(model, model, optimizer, torch.amp.GradScaler(workers.device.type,
                                                                enabled=config.precision == "fp16"))
        state = load_latest(ckpt_dir, log)
        if state is not None:
            run._resume(state, ckpt_dir, config, log)
        set_kernels(model, config.kernels)
        if config.compile:
            compile_regions(model)
        if workers.world > 1:
            run.net = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[workers.device.index] if workers.device.type == "cuda" else None,
                find_unused_parameters=model.config.layerdrop > 0)
        return run

    def _resume(self, state: dict, ckpt_dir: Path, config: TrainConfig, log) -> None:
        _check_same_model(state, self.model, ckpt_dir)
        if state["update"] > config.max_updates:
            raise ValueError(f"{ckpt_dir}: its newest checkpoint is at update {state['update']}, past "
                             f"max_updates={config.max_updates}; give max_updates above {state['update']} to "
                             "continue it, or train into another folder to start over")
        self.model.load_state_dict(state["model"])
        load_fused_optimizer_state(self.optimizer, state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.update, self.epoch, self.position = state["update"], state["epoch"], state["position"]
        self.best = state["best_valid"]
        log(f"resuming from update {self.update}")
        _note_schedule_change(state.get("train_config", {}), config, self.update, log)


def _accumulate(net, stream: MicroBatches, config: TrainConfig, workers: Workers, scaler,
                window: "_Window") -> torch.Tensor:
    """Forward and backward of one update's micro-batches; returns STATS summed over them and
    over workers, on the device (nothing is read back)."""
    stats = None
    for micro in range(config.update_freq):
        waited = time.time()
        batch = stream.next()
        window.count_batch(batch, time.time() - waited)
        sync = micro == config.update_freq - 1 or workers.world == 1
        with contextlib.nullcontext() if sync else net.no_sync():
            result = _forward(net, batch, config, workers.device)
            scaler.scale(result.loss).backward()
        stats = _stats(result) if stats is None else stats + _stats(result)
    return workers.sum(stats)


def _step(model: HubertPretrain, optimizer, scaler, stats: torch.Tensor, config: TrainConfig,
          workers: Workers) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalise, clip and apply the summed gradients; (grad norm, 1.0 if the update was skipped
    as non-finite else 0.0), both on the device: the decision never leaves it."""
    scaler.unscale_(optimizer)
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    # DDP averaged over workers: back to the update's sum, then over its masked frames; and
    # clipped as clip_grad_norm_ does; one pass over the gradients for both.
    scale = (workers.world / stats[NUM_MASKED].clamp(min=1)).float()
    grad_norm = torch.nn.utils.get_total_norm(grads, foreach=True) * scale
    torch._foreach_mul_(grads, scale * (config.clip_norm / (grad_norm + 1e-6)).clamp(max=1.0))
    bad = (~torch.isfinite(grad_norm)).float()
    step_unless(optimizer, bad)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    return grad_norm, bad


def step_unless(optimizer: torch.optim.Optimizer, skip: torch.Tensor) -> None:
    """`optimizer.step()`, skipped on the device where `skip` (a () float32 tensor) is 1.0: a fused
    optimizer reads `found_inf` as GradScaler sets it, and then leaves the weights, both Adam
    moments and `step` as they were. Nothing is read back to the host."""
    if not all(group.get("fused") for group in optimizer.param_groups):
        raise ValueError("step_unless needs a fused optimizer (fused=True): others ignore found_inf "
                         "and would apply a non-finite step")
    optimizer.found_inf = skip
    try:
        optimizer.step()
    finally:
        del optimizer.found_inf


def _check_bad_updates(totals: dict, config: TrainConfig, update: int, log) -> None:
    """Report the updates of the last log interval that were skipped; stop when `max_bad_updates`
    came in a row. Checked at the log read, so the stop comes up to `log_every` updates late."""
    if not totals["skipped"]:
        return
    log(f"updates {totals['first_update'] + 1}-{update}: {totals['skipped']:.0f} non-finite loss or gradient, "
        f"update skipped ({totals['skipped_in_all']:.0f} in all)")
    if totals["bad_in_a_row"] >= config.max_bad_updates:
        raise TrainingError(f"{totals['bad_in_a_row']:.0f} non-finite updates in a row by update {update} "
                            f"(max_bad_updates {config.max_bad_updates}, checked every {config.log_every} "
                            "updates); lower the lr, use bf16 instead of fp16, or check the data")


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
    """ValueError naming the first model or masking setting, or the units per label set, that a
    checkpoint differs in from this run."""
    if list(state.get("num_units", model.num_units)) != list(model.num_units):
        raise ValueError(f"{ckpt_dir}: its checkpoints predict {state['num_units']} units per label set, this "
                         f"run's labels have {model.num_units}; resume with the labels it was trained on, or "
                         "train into another folder")
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
    sizes = open_manifest(path).sizes if path.exists() else np.zeros(0, np.int64)
    if not (sizes >= config.min_sample_size).any():
        if len(sizes):
            why = (f"the {len(sizes)} utterance(s) of {path} are all shorter than min_sample_size = "
                   f"{config.min_sample_size} samples ({config.min_sample_size / SAMPLE_RATE:g} s)")
            fix = "lower min_sample_size or hold out longer audio"
        else:
            why = f"{path} lists no utterance" if path.exists() else f"there is no {path}"
            fix = "set valid_percent > 0 for a valid split"
        log(f"note: no validation: {why}, so there is no valid loss and no best.pt ({fix})")
        return None
    return LabelledAudio(path, label_dirs, config.min_sample_size)


def _load_encoder_weights(model: HubertPretrain, source) -> None:
    """The encoder weights of `source` (a checkpoint or a Hugging Face export, whose config has no head
    or training-only settings), when its encoder is built as this run's."""
    from .model_io import load_encoder

    encoder = load_encoder(source)
    for name in ENCODER_SHAPE:
        theirs, ours = getattr(encoder.config, name), getattr(model.config, name)
        if _plain(theirs) != _plain(ours):
            raise ValueError(f"{source}: its encoder has {name} = {_plain(theirs)}, this run's model "
                             f"{_plain(ours)}; choose the preset it was trained with, or set model.{name}")
    model.encoder.load_state_dict(encoder.state_dict())


def _usable_cores() -> int:
    """The cores this process may run on (all of them where the OS cannot say)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _forward(net, batch: Batch, config: TrainConfig, device: torch.device):
    """Forward + loss (summed, not normalised) of one micro-batch; masks and dropout seeded by the batch.
    An unpadded batch (every crop) goes in without lengths: no padding masks, flash attention."""
    torch.manual_seed(batch.seed)
    lengths = batch.lengths.to(device, non_blocking=True) if batch.padded else None
    with _autocast(config, device):
        out = net(batch.wav.to(device, non_blocking=True), lengths)
    targets = [t.to(device, non_blocking=True) for t in batch.targets]
    return hubert_loss(out, targets, config.masked_weight, config.unmasked_weight,
                       config.penalty_weight, normalizer=1.0)


def _autocast(config: TrainConfig, device: torch.device):
    """The training precision's autocast (off for fp32)."""
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(config.precision)
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


def _stats(result) -> torch.Tensor:
    """STATS of one micro-batch, (len(STATS),) float64 on the device."""
    values = [result.masked_ce, result.unmasked_ce, result.num_masked, result.num_unmasked,
              result.masked_correct, result.unmasked_correct, result.feature_penalty * result.num_masked]
    return torch.stack([v.double() for v in values])


class _Window:
    """What happened since the last log: sums on the device, added to without reading them back,
    and counts known on the host; `read` is the one synchronisation per log interval."""

    def __init__(self, device: torch.device, update: int):
        self.device, self.skipped_in_all = device, 0.0
        self.run = torch.zeros((), dtype=torch.float64, device=device)  # non-finite updates in a row, to now
        self._reset(update)

    def _reset(self, update: int) -> None:
        self.first_update, self.begin, self.data_seconds = update, time.time(), 0.0
        self.host = torch.zeros(len(HOST_STATS), dtype=torch.float64)
        # STATS, then the grad norm summed over applied updates, skipped updates, longest run of them
        self.sums = torch.zeros(len(STATS) + 3, dtype=torch.float64, device=self.device)

    def count_batch(self, batch: Batch, waited: float) -> None:
        self.host[0] += float(batch.lengths.sum())  # a host tensor: no device involved
        self.host[1] += 1
        self.data_seconds += waited

    def add(self, stats: torch.Tensor, grad_norm: torch.Tensor, bad: torch.Tensor) -> None:
        """One update's STATS (summed over workers), its grad norm and its skip flag, all on the device.
        A skipped update's statistics are left out (they may be NaN)."""
        bad = bad.double()
        self.run = (self.run + bad) * bad
        kept = torch.where(bad > 0, 0.0, torch.cat([stats, grad_norm.double()[None]]))
        self.sums[:len(STATS) + 1] += kept
        self.sums[len(STATS) + 1] += bad
        self.sums[len(STATS) + 2] = torch.maximum(self.sums[len(STATS) + 2], self.run)

    def read(self, workers: Workers, stop_requested: bool, update: int) -> dict:
        """The totals of the updates since the last read (host counts summed over workers);
        the window then starts afresh at `update`."""
        self.host[2] = 1.0 if stop_requested else 0.0
        host = workers.sum(self.host).cpu().tolist()
        values = self.sums.tolist()
        seconds = max(time.time() - self.begin, 1e-9)
        self.skipped_in_all += values[len(STATS) + 1]
        totals = {**dict(zip(STATS, values)), **dict(zip(HOST_STATS, host)), "first_update": self.first_update,
                  "grad_norm_sum": values[len(STATS)], "skipped": values[len(STATS) + 1],
                  "bad_in_a_row": values[len(STATS) + 2], "skipped_in_all": self.skipped_in_all,
                  "seconds": seconds, "data_share": self.data_seconds / seconds}
        self._reset(update)
        return totals


@torch.no_grad()
def validate(net, model: HubertPretrain, data: LabelledAudio, config: TrainConfig, workers: Workers) -> dict:
    """Loss and accuracies on the valid split, plus collapse detectors: per-layer feature
    variance and how many units the model predicts at all.

    Two forward passes per batch, both at the training precision: the masked one gives the loss
    and accuracies, one unmasked encoder pass gives the layers and, through the head, the units
    predicted. Sums stay on the device and are read back once, at the end."""
    net.eval()
    plan = plan_batches(data.sizes, config.max_tokens,
                        config.max_sample_size, config.seed, epoch=0)
    mine = [(i, items) for i, items in enumerate(plan) if i % workers.world == workers.rank]
    loader = BatchLoader(data, mine, 0, config.crop, config.max_sample_size, config.seed, model.config.conv_spec,
                         config.crop_multiple)
    device = workers.device
    stats = torch.zeros(len(STATS), dtype=torch.float64, device=device)
    variance = torch.zeros(model.config.num_hidden_layers, dtype=torch.float64, device=device)
    used = torch.zeros(model.num_units[0], dtype=torch.float64, device=device)
    for index in range(len(loader)):
        batch = loader[index]
        stats += _stats(_forward(model, batch, config, device))
        lengths = batch.lengths.to(device) if batch.padded else None
        with _autocast(config, device):
            out = model.encoder(batch.wav.to(device), lengths)
        keep = ~out.padding
        variance += torch.stack([_variance_sum(layer, keep) for layer in out.layers])
        predicted = model.unit_logits(out.last_hidden)[0].argmax(-1)
        used.index_add_(0, predicted.flatten(), keep.flatten().double())
    totals = workers.sum(torch.cat([stats, variance, used])).tolist()  # the one read of this validation
    stats, variance, used = (totals[:len(STATS)], totals[len(STATS):len(STATS) + len(variance)],
                             totals[len(STATS) + len(variance):])
    frames = max(1.0, sum(used))
    return {**_summary(dict(zip(STATS, stats)), config.penalty_weight),
            "layer_variance": [round(v / frames, 5) for v in variance],
            "units_predicted": sum(1 for count in used if count > 0), "num_units": model.num_units[0]}


def _variance_sum(layer: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """layer (B, T, D), keep (B, T) bool -> () float64: the variance over kept frames (unbiased)
    of each feature, averaged over features, times the number of kept frames."""
    weight = keep[..., None].to(torch.float32)
    count = keep.sum()
    x = layer.float()
    mean = (x * weight).sum((0, 1)) / count.clamp(min=1)
    var = ((x - mean) ** 2 * weight).sum((0, 1)) / (count - 1).clamp(min=1)
    return (var.mean() * count).double()


def _summary(s: dict, penalty_weight: float) -> dict:
    """Loss and accuracies from STATS sums (name -> value)."""
    masked = max(1.0, s["num_masked"])
    return {"loss": (s["masked_ce"] + penalty_weight * s["feature_penalty"]) / masked,
            "masked_ce": s["masked_ce"] / masked,
            "masked_acc": s["masked_correct"] / masked,
            "unmasked_acc": s["unmasked_correct"] / max(1.0, s["num_unmasked"]),
            "feature_penalty": s["feature_penalty"] / masked}


class _Logger:
    """JSON lines (train_log.jsonl) and TensorBoard (tb/) on the main worker."""

    def __init__(self, out_dir: Path, active: bool, log, penalty_weight: float):
        self.active, self.log, self.history = active, log, []
        self.penalty_weight = penalty_weight
        self.path = out_dir / TRAIN_LOG
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

    def train_record(self, update: int, lr: float, totals: dict) -> dict:
        """The log record of the updates `_Window.read` summed up in `totals`."""
        applied = max(1.0, update - totals["first_update"] - totals["skipped"])
        record = {"split": "train", "update": update, "lr": lr, **_summary(totals, self.penalty_weight),
                  "grad_norm": totals["grad_norm_sum"] / applied,
                  "audio_s_per_s": totals["audio_samples"] / SAMPLE_RATE / totals["seconds"],
                  "data_share": totals["data_share"], "skipped": int(totals["skipped_in_all"])}
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
