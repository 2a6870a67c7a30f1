"""Pretraining learns, resumes exactly after SIGKILL, matches across worker counts, survives faults."""
import copy
import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from clustering.labels import LabelError, write_labels, read_labels
from pretrain import trainer as trainer_module
from pretrain.checkpoint import load_fused_optimizer_state
from pretrain.presets import model_preset
from pretrain.labelled_audio import LabelledAudio
from pretrain.presets import train_preset
from pretrain.train_config import apply_overrides
from pretrain.trainer import Preempted, TrainingError, train
from tone_corpus import make_tone_corpus

HERE = Path(__file__).parent


def quick(**changes):
    base = dict(max_tokens=64000, min_sample_size=8000, valid_every=1000, log_every=10, num_workers=0)
    return apply_overrides(train_preset("tiny"), {**base, **changes})


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_tone_corpus(tmp_path_factory.mktemp("tones"))


def weights(path):
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def test_a_skipped_step_leaves_weights_moments_and_step_alone():
    """The fused-AdamW skip the trainer takes on a non-finite gradient norm, and a finite step."""
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1, weight_decay=0.01, fused=True)

    def step(grad_scale: float) -> dict:
        optimizer.zero_grad()
        (grad_scale * model(torch.randn(5, 4)).sum()).backward()
        norm = torch.nn.utils.get_total_norm([p.grad for p in model.parameters()])
        trainer_module.step_unless(optimizer, (~torch.isfinite(norm)).float())
        return {name: [p.detach().clone(), *(optimizer.state[p][k].clone() for k in ("exp_avg", "exp_avg_sq", "step"))]
                for name, p in model.named_parameters()}

    before = step(1.0)  # a first update makes the moments
    skipped = step(math.inf)  # inf * grad: a non-finite norm
    for name in before:
        for kept, want in zip(skipped[name], before[name]):
            assert torch.equal(kept, want), name
    applied = step(1.0)
    for name in before:
        for moved, old in zip(applied[name], before[name]):
            assert not torch.equal(moved, old), name
    assert applied["weight"][3].item() == 2  # two steps taken, the skipped one not counted
    with pytest.raises(ValueError, match="fused optimizer"):
        trainer_module.step_unless(torch.optim.AdamW(model.parameters(), fused=False), torch.tensor(0.0))


def test_loss_falls_and_masked_accuracy_rises_within_200_updates(corpus, tmp_path):
    root, labels = corpus
    result = train(root, [labels], tmp_path, model_preset("tiny"), quick(max_updates=200, valid_every=100),
                   log=lambda m: None)
    logged = [r for r in result.history if r["split"] == "train"]
    assert logged[-1]["loss"] < 0.6 * logged[0]["loss"]
    valid = [r for r in result.history if r["split"] == "valid"][-1]
    assert valid["masked_acc"] > 4 / 8  # chance is 1/8
    assert valid["units_predicted"] == 8 and min(valid["layer_variance"]) > 0.01
    lines = [json.loads(l) for l in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert len(lines) == len(result.history) and (tmp_path / "tb").is_dir()


KILL_SCRIPT = """
import os, signal, sys
sys.path.insert(0, {tests!r})
from pretrain import trainer
from pretrain.presets import model_preset
from pretrain.presets import train_preset
from pretrain.train_config import apply_overrides
real_save = trainer.save_checkpoint
def save_then_die(state, directory, update, keep_last):
    path = real_save(state, directory, update, keep_last)
    if update == {kill_at}:
        os.kill(os.getpid(), signal.SIGKILL)
    return path
trainer.save_checkpoint = save_then_die
config = apply_overrides(train_preset("tiny"), dict(max_tokens=64000, min_sample_size=8000, valid_every=1000,
                         num_workers=0, max_updates=60, save_every=10, warmup_updates=10))
trainer.train({root!r}, [{labels!r}], {out!r}, model_preset("tiny"), config, log=lambda m: None)
"""


def run_script(root, labels, out, kill_at):
    code = KILL_SCRIPT.format(tests=str(HERE), root=str(root), labels=str(labels), out=str(out), kill_at=kill_at)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


def test_sigkill_at_update_30_then_resume_gives_the_same_weights(corpus, tmp_path):
    root, labels = corpus
    killed = run_script(root, labels, tmp_path / "a", kill_at=30)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert not (tmp_path / "a" / "checkpoints" / "update_0000040.pt").exists()
    resumed = run_script(root, labels, tmp_path / "a", kill_at=-1)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    straight = run_script(root, labels, tmp_path / "b", kill_at=-1)
    assert straight.returncode == 0, straight.stderr[-2000:]
    a = weights(tmp_path / "a" / "checkpoints" / "update_0000060.pt")
    b = weights(tmp_path / "b" / "checkpoints" / "update_0000060.pt")
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-6


def _as_torchrun_worker(rank, port):
    """What torchrun sets for worker `rank` of 2."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2", RANK=str(rank),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)


def _ddp_worker(rank, root, labels, out, port):
    _as_torchrun_worker(rank, port)
    train(root, [labels], out, model_preset("tiny"), quick(max_updates=6, save_every=6, warmup_updates=2),
          log=lambda m: None)


def test_two_gloo_workers_match_one_worker_with_accumulation_2(corpus, tmp_path):
    root, labels = corpus
    port = 29500 + os.getpid() % 1000
    mp.spawn(_ddp_worker, args=(root, labels, tmp_path / "ddp", port), nprocs=2, join=True)
    train(root, [labels], tmp_path / "acc", model_preset("tiny"),
          quick(max_updates=6, save_every=6, warmup_updates=2, update_freq=2), log=lambda m: None)
    a = weights(tmp_path / "ddp" / "checkpoints" / "update_0000006.pt")
    b = weights(tmp_path / "acc" / "checkpoints" / "update_0000006.pt")
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-5, rtol=1e-4), key


def _ddp_sigterm_worker(rank, root, labels, out, port):
    _as_torchrun_worker(rank, port)
    if rank == 1:  # only this worker is signalled, during update 3
        real, calls = trainer_module.hubert_loss, []

        def loss_then_term(*args, **kwargs):
            calls.append(1)
            if len(calls) == 3:
                os.kill(os.getpid(), signal.SIGTERM)
            return real(*args, **kwargs)

        trainer_module.hubert_loss = loss_then_term
    try:
        train(root, [labels], out, model_preset("tiny"), quick(max_updates=20, log_every=5, save_every=100,
                                                              warmup_updates=2), log=lambda m: None)
    except Preempted as stopped:
        (out / f"stopped{rank}.txt").write_text(str(stopped))


def test_sigterm_on_one_torchrun_worker_stops_all_at_the_next_log_read(corpus, tmp_path):
    """Under DDP the workers agree on a stop without a per-update read-back: the stop requests
    are summed with the log statistics, so all stop at the next log read (update 5 here, for a
    signal during update 3), save one checkpoint there and say so."""
    root, labels = corpus
    port = 29500 + (os.getpid() + 500) % 1000
    mp.spawn(_ddp_sigterm_worker, args=(root, labels, tmp_path, port), nprocs=2, join=True)
    messages = [(tmp_path / f"stopped{rank}.txt").read_text() for rank in (0, 1)]
    assert messages[0].startswith("stopped by SIGTERM on another worker after update 5;")
    assert messages[1].startswith("stopped by SIGTERM after update 5;")
    assert [p.name for p in (tmp_path / "checkpoints").glob("update_*.pt")] == ["update_0000005.pt"]


def test_corrupt_newest_checkpoint_falls_back_with_a_message(corpus, tmp_path):
    root, labels = corpus
    train(root, [labels], tmp_path, model_preset("tiny"), quick(max_updates=20, save_every=10), log=lambda m: None)
    newest = tmp_path / "checkpoints" / "update_0000020.pt"
    newest.write_bytes(newest.read_bytes()[:1000])  # truncated by a crash mid-copy
    messages = []
    result = train(root, [labels], tmp_path, model_preset("tiny"), quick(max_updates=30, save_every=10),
                   log=messages.append)
    assert any("update_0000020.pt is unreadable" in m and "previous checkpoint" in m for m in messages)
    assert any("resuming from update 10" in m for m in messages) and result.update == 30


def test_a_checkpoint_from_before_fused_adamw_resumes(corpus, tmp_path):
    root, labels = corpus
    train(root, [labels], tmp_path, model_preset("tiny"), quick(max_updates=2, save_every=2), log=lambda m: None)
    path = tmp_path / "checkpoints" / "update_0000002.pt"
    state = torch.load(path, map_location="cpu", weights_only=True)
    for group in state["optimizer"]["param_groups"]:
        group["fused"], group["foreach"] = None, None  # what the unfused optimizer saved
    torch.save(state, path)
    result = train(root, [labels], tmp_path, model_preset("tiny"), quick(max_updates=4, save_every=2),
                   log=lambda m: None)
    assert result.update == 4


def _adamw_steps(model, optimizer, count):
    for index in range(count):
        optimizer.zero_grad()
        torch.manual_seed(index)
        model(torch.randn(5, 4)).square().sum().backward()
        optimizer.step()


def test_pre_fused_optimizer_state_loads_its_steps_as_the_fused_kernel_needs_them():
    """An unfused AdamW saved fused=None and `step` as CPU tensors (older torch: numbers): loaded,
    every step is a float32 tensor on its parameter's device (the meta device stands in for a GPU),
    and the fused optimizer continues exactly as the unfused one."""
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    unfused = torch.optim.AdamW(model.parameters(), lr=0.1, fused=False, foreach=False)
    _adamw_steps(model, unfused, 2)
    saved = copy.deepcopy(unfused.state_dict())
    saved["param_groups"][0]["fused"] = None
    saved["state"][1]["step"] = 2  # a number, as older torch saved it
    assert saved["state"][0]["step"].device.type == "cpu"
    elsewhere = torch.nn.Linear(4, 3, device="meta")
    fused = torch.optim.AdamW(elsewhere.parameters(), lr=0.1, fused=True)
    load_fused_optimizer_state(fused, saved)
    for param in elsewhere.parameters():
        step = fused.state[param]["step"]
        assert (step.device.type, step.dtype, step.shape) == ("meta", torch.float32, ())
    assert all(group["fused"] for group in fused.param_groups)
    twin = copy.deepcopy(model)
    fused = torch.optim.AdamW(twin.parameters(), lr=0.1, fused=True)
    load_fused_optimizer_state(fused, saved)
    _adamw_steps(model, unfused, 1)
    _adamw_steps(twin, fused, 1)
    for mine, theirs in zip(twin.parameters(), model.parameters()):
        assert (mine - theirs).abs().max().item() <= 1e-6
        assert fused.state[mine]["step"].item() == 3.0


def test_non_finite_loss_is_skipped_on_the_device_and_counted_at_the_log(corpus, tmp_path, monkeypatch):
    """The skip is decided on the device (no read-back per update); skipped updates are counted,
    and max_bad_updates in a row checked, when the log is read: every log_every updates."""
    root, labels = corpus
    real, calls = trainer_module.hubert_loss, []

    def sometimes_nan(*args, **kwargs):
        out = real(*args, **kwargs)
        calls.append(1)
        if len(calls) in (5, 6):
            out.loss = out.loss * float("nan")
        return out

    monkeypatch.setattr(trainer_module, "hubert_loss", sometimes_nan)
    messages = []
    result = train(root, [labels], tmp_path, model_preset("tiny"), quick(max_updates=10, log_every=10),
                   log=messages.append)
    assert [m for m in messages if "non-finite" in m] == [
        "updates 1-10: 2 non-finite loss or gradient, update skipped (2 in all)"]  # one report, at the log read
    logged = [r for r in result.history if r["split"] == "train"][-1]
    assert logged["skipped"] == 2 and math.isfinite(logged["loss"])  # the NaN updates are left out of the sums
    state = weights(tmp_path / "checkpoints" / "update_0000010.pt")
    assert all(torch.isfinite(v).all() for v in state.values())
    calls.clear()
    monkeypatch.setattr(trainer_module, "hubert_loss", lambda *a, **k: _nan(real(*a, **k)))
    # 3 in a row is the limit; the first log read, at update 4, sees 4 in a row and stops
    with pytest.raises(TrainingError, match="4 non-finite updates in a row by update 4 "
                                            r"\(max_bad_updates 3, checked every 4 updates\)"):
        train(root, [labels], tmp_path / "b", model_preset("tiny"),
              quick(max_updates=10, max_bad_updates=3, log_every=4), log=lambda m: None)


def _nan(out):
    out.loss = out.loss * float("nan")
    return out


def test_label_audio_mismatch_names_the_utterance(corpus, tmp_path):
    root, labels = corpus
    bad = tmp_path / "labels"
    bad.mkdir()
    for name in ("labels.json", "dict.km.txt", "valid.km"):
        (bad / name).write_bytes((labels / name).read_bytes())
    rows = read_labels(labels / "train.km")
    rows[3] = rows[3][: len(rows[3]) // 2]
    write_labels(bad / "train.km", rows)
    with pytest.raises(LabelError, match=r"train.km:4: utterance train3.wav has"):
        LabelledAudio(root / "train.tsv", [bad], 8000)


def test_best_pt_holds_the_best_validated_weights_between_saves(corpus, tmp_path):
    root, labels = corpus
    result = train(root, [labels], tmp_path, model_preset("tiny"),
                   quick(max_updates=20, valid_every=5, save_every=20), log=lambda m: None)
    valid = [r for r in result.history if r["split"] == "valid"]
    best = min(valid, key=lambda r: r["loss"])
    state = torch.load(tmp_path / "checkpoints" / "best.pt", map_location="cpu", weights_only=True)
    assert [r["update"] for r in valid] == [5, 10, 15, 20] and state["update"] == best["update"]
    assert state["best_valid"] == pytest.approx(best["loss"])


def test_a_run_without_validation_says_so_once(corpus, tmp_path):
    root, labels = corpus
    manifest = tmp_path / "data"
    manifest.mkdir()
    (manifest / "train.tsv").write_bytes((root / "train.tsv").read_bytes())
    (manifest / "valid.tsv").write_text((root / "valid.tsv").read_text().splitlines()[0] + "\n")
    messages = []
    train(manifest, [labels], tmp_path / "out", model_preset("tiny"), quick(max_updates=4, valid_every=2),
          log=messages.append)
    assert sum(m.startswith("note: no validation:") for m in messages) == 1
    assert not (tmp_path / "out" / "checkpoints" / "best.pt").exists()
