"""The checks of benchmarks/gpu_check.sh that no other script makes, one subcommand each, figures
printed (and the last line a JSON record). Without CUDA each runs on the CPU: the dry run.

    python3 benchmarks/gpu_check.py resume --preset base --updates 40 --stop-at 20 --hours 0.2
    python3 benchmarks/gpu_check.py kernels --preset base --batch 4 --seconds 8
    python3 benchmarks/gpu_check.py labels WORK_DIR --seconds 120     # WORK_DIR: a pipeline run up to it1-train
    python3 benchmarks/gpu_check.py corpora --train-hours 0.5 --label-seconds 3600

resume: a bf16 run SIGTERMed (by itself, at the start of update `--stop-at` + 1) and resumed to
`--updates`, against an uninterrupted run alongside (two processes at a time); on CUDA a second
uninterrupted run gives the nondeterminism floor (atomics in some backward kernels). kernels: fast and reference kernels
under bf16 autocast, each against the reference in float32, forward and gradients. labels: the
newest checkpoint of a pipeline's iteration-1 training, units of a k-means teacher from bf16
features on the device against float32 features on the CPU.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks import bench_layer_labels, bench_train  # noqa: E402
from benchmarks.bench_model import kernel_parts  # noqa: E402
from benchmarks.data import OUT  # noqa: E402
from pretrain.checkpoint import checkpoint_path, checkpoint_paths, checkpoint_update  # noqa: E402
from pretrain.run_files import CHECKPOINTS  # noqa: E402

PREEMPTED = 3  # exit status of a training child stopped by its SIGTERM
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def relative_error(got: list[torch.Tensor], want: list[torch.Tensor]) -> float:
    """||got - want|| / ||want|| over the tensors of both lists together (float64)."""
    diff = sum(float((g.double() - w.double()).square().sum()) for g, w in zip(got, want))
    norm = sum(float(w.double().square().sum()) for w in want)
    return math.sqrt(diff / max(norm, 1e-30))


# ---------------------------------------------------------------- resume: SIGTERM, resume, compare

def train_child(spec: dict) -> None:
    """One training run into spec["out"]; SIGTERM to itself at the start of update spec["stop_at"]."""
    from pretrain import trainer
    from pretrain.presets import model_preset, train_preset
    from pretrain.train_config import apply_overrides

    if spec["stop_at"] is not None:
        real = trainer.lr_at  # called once at the start of every update

        def lr_at(update, config):
            if update == spec["stop_at"]:
                os.kill(os.getpid(), signal.SIGTERM)
            return real(update, config)

        trainer.lr_at = lr_at
    config = apply_overrides(train_preset(spec["preset"]), spec["settings"])
    try:
        trainer.train(spec["data"], [spec["labels"]], spec["out"], model_preset(spec["preset"]), config,
                      log=lambda m: None)
    except trainer.Preempted as stopped:
        print(stopped)
        sys.exit(PREEMPTED)


def run_training(spec: dict, out: Path, stop_at: int | None) -> int:
    """train_child in its own process; prints and returns its exit status."""
    begin = time.perf_counter()
    done = subprocess.run([sys.executable, __file__, "train-child", json.dumps({**spec, "out": str(out),
                                                                                 "stop_at": stop_at})],
                          capture_output=True, text=True)
    last = (done.stderr.strip().splitlines() or [""])[-1]
    print(f"  {out.name}{' (SIGTERM at update ' + str(stop_at + 1) + ')' if stop_at is not None else ''}: exit "
          f"{done.returncode} in {time.perf_counter() - begin:.1f} s"
          f"{'' if done.returncode in (0, PREEMPTED) else ': ' + last}", flush=True)
    return done.returncode


def final_weights(out: Path, update: int) -> dict:
    return torch.load(checkpoint_path(out / CHECKPOINTS, update), map_location="cpu", weights_only=True)["model"]


def max_difference(a: dict, b: dict) -> float:
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)


def resume(args) -> dict:
    """Stopped by SIGTERM during update `stop_at` + 1 and resumed, against uninterrupted (on CUDA
    twice: the second gives the device's nondeterminism floor); returns the figures."""
    work = args.work / "resume"
    data, labels = bench_train.make_corpus(work / "corpus", args.hours)
    settings = {"max_updates": args.updates, "warmup_updates": max(1, args.updates // 4), "log_every": 10,
                "save_every": 10**6, "valid_every": 10**6, "keep_last": 2, "precision": args.precision,
                "num_workers": args.workers, **({"max_tokens": args.max_tokens} if args.max_tokens else {})}
    spec = {"preset": args.preset, "data": str(data), "labels": str(labels), "settings": settings}
    straight = ["straight"] + (["straight-2"] if DEVICE == "cuda" else [])
    for name in ["resumed"] + straight:
        shutil.rmtree(work / name, ignore_errors=True)

    def stopped_then_resumed() -> bool:
        return run_training(spec, work / "resumed", args.stop_at) == PREEMPTED and \
            run_training(spec, work / "resumed", None) == 0

    with ThreadPoolExecutor(2) as pool:  # two processes at a time: the uninterrupted runs alongside
        chains = [pool.submit(stopped_then_resumed),
                  pool.submit(lambda: all(run_training(spec, work / name, None) == 0 for name in straight))]
        if not all(chain.result() for chain in chains):
            return {"check": "resume", "ok": False, "error": "a run failed (see above)"}
    stopped_at = checkpoint_update(checkpoint_paths(work / "resumed" / CHECKPOINTS)[0])
    resumed, straight = final_weights(work / "resumed", args.updates), final_weights(work / "straight", args.updates)
    result = {"check": "resume", "preset": args.preset, "precision": args.precision, "device": DEVICE,
              "updates": args.updates, "sigterm_in_update": args.stop_at + 1, "checkpoint_at": stopped_at,
              "max_abs_diff": max_difference(resumed, straight),
              "largest_weight": max(float(v.abs().max()) for v in straight.values())}
    floor = ""
    if DEVICE == "cuda":
        result["floor_max_abs_diff"] = max_difference(final_weights(work / "straight-2", args.updates), straight)
        floor = f"; two uninterrupted runs differ by {result['floor_max_abs_diff']:.3g} (the device's nondeterminism)"
    result["ok"] = result["max_abs_diff"] <= 2 * result.get("floor_max_abs_diff", 0.0)
    print(f"{args.preset} {args.precision} on {DEVICE}: SIGTERM during update {args.stop_at + 1}, checkpoint at "
          f"update {stopped_at}, resumed to {args.updates}: max |resumed - uninterrupted| = "
          f"{result['max_abs_diff']:.3g} (largest weight {result['largest_weight']:.3g}){floor}: "
          f"{'equal' if result['max_abs_diff'] == 0 else 'within 2x the floor' if result['ok'] else 'DIFFERENT'}")
    return result


# ---------------------------------------------------------------- kernels: fast vs reference in bf16

def outputs_and_grads(module, run, kernels: str, bf16: bool) -> list[torch.Tensor]:
    """[output, gradient of each parameter] of (output * fixed probe).sum(), float32."""
    from pretrain.model import set_kernels

    set_kernels(module, kernels)
    module.zero_grad(set_to_none=True)
    with torch.autocast(DEVICE, dtype=torch.bfloat16, enabled=bf16):
        out = run(module).float()
    probe = torch.randn(out.shape, generator=torch.Generator(DEVICE).manual_seed(1), device=DEVICE)
    (out * probe).sum().backward()
    return [out.detach()] + [p.grad.float().clone() for p in module.parameters() if p.grad is not None]


def kernels(args) -> dict:
    """Each part's forward and gradient error under bf16, fast and reference, against fp32 reference."""
    from pretrain.model import HubertEncoder
    from pretrain.presets import model_preset

    torch.manual_seed(0)
    encoder = HubertEncoder(model_preset(args.preset)).to(DEVICE).eval()  # eval: no dropout to seed
    parts = kernel_parts(encoder, args.batch, args.seconds, DEVICE)
    wav = torch.from_numpy(np.stack([bench_layer_labels.speech_like(int(args.seconds * 16000), seed)
                                     for seed in range(args.batch)])).to(DEVICE)
    parts["encoder"] = (encoder, lambda m: m(wav).last_hidden)
    result = {"check": "kernels", "preset": args.preset, "device": DEVICE, "parts": {}}
    for name, (module, run) in parts.items():
        want = outputs_and_grads(module, run, "reference", bf16=False)
        errors = {}
        for kernels_, bf16 in (("reference", True), ("fast", True), ("fast", False)):
            got = outputs_and_grads(module, run, kernels_, bf16)
            errors[f"{kernels_} {'bf16' if bf16 else 'fp32'}"] = {"forward": relative_error(got[:1], want[:1]), "grads": relative_error(got[1:], want[1:])}
        ok = all(errors["fast bf16"][k] <= 2 * errors["reference bf16"][k] + 1e-4 for k in ("forward", "grads"))
        result["parts"][name] = {**errors, "ok": ok}
        listed = "; ".join(f"{which} {e['forward']:.2e} / {e['grads']:.2e}" for which, e in errors.items())
        print(f"  {name:<16} error against the fp32 reference (relative L2, forward / gradients): {listed}: "
              f"{'fast within 2x the reference' if ok else 'FAST WORSE THAN 2x THE REFERENCE'}", flush=True)
    result["ok"] = all(part["ok"] for part in result["parts"].values())
    return result


# ---------------------------------------------------------------- labels: device bf16 vs CPU fp32

def labels(args) -> dict:
    """Units of the pipeline's newest iteration-1 checkpoint: bf16 on the device vs fp32 on the CPU."""
    from clustering.assign import label_audio
    from clustering.kmeans import fit_kmeans
    from clustering.manifest import read_manifest
    from pretrain.checkpoint import latest_path
    from pretrain.layer_features import LayerFeatures

    checkpoint = latest_path(args.run / "it1-train" / "checkpoints")
    if checkpoint is None:
        return {"check": "labels", "ok": False, "error": f"no checkpoint in {args.run / 'it1-train'}"}
    encoder = bench_layer_labels.base_encoder(str(checkpoint))
    layer = args.layer or -(-encoder.config.num_hidden_layers // 2)
    manifest = bench_layer_labels.first_seconds(read_manifest(args.run / "data" / "train.tsv"), args.seconds)
    exact = LayerFeatures(copy.deepcopy(encoder), layer, device="cpu", precision="fp32")
    fast = LayerFeatures(encoder, layer, device=DEVICE, precision="bf16")
    teacher = fit_kmeans(np.concatenate(list(exact.stream(manifest))), args.units, "faiss", device="cpu")
    want = np.concatenate(label_audio(manifest, exact, teacher))
    got = np.concatenate(label_audio(manifest, fast, teacher))
    agree = float((want == got).mean())
    print(f"{checkpoint.parent.parent.name} {checkpoint.name}, layer {layer}, K={args.units} on "
          f"{bench_layer_labels.audio_seconds(manifest):.0f} s ({len(want)} frames): {DEVICE} bf16 labels agree with "
          f"CPU fp32 on {agree:.2%} of frames ({'>=' if agree >= 0.99 else 'BELOW'} 99%)")
    return {"check": "labels", "checkpoint": str(checkpoint), "layer": layer, "frames": len(want),
            "device": DEVICE, "agree": agree, "ok": agree >= 0.99}


def corpora(args) -> dict:
    """The benchmarks' corpora, made ahead (bench_train's and bench_layer_labels')."""
    bench_train.make_corpus(OUT / f"bench-corpus-{args.train_hours:g}h", args.train_hours)
    bench_layer_labels.corpus(args.label_seconds)
    return {"check": "corpora", "ok": True}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("resume")
    r.add_argument("--preset", default="base")
    r.add_argument("--updates", type=int, default=40)
    r.add_argument("--stop-at", type=int, default=20)
    r.add_argument("--hours", type=float, default=0.2, help="the random-label corpus")
    r.add_argument("--precision", default="bf16")
    r.add_argument("--max-tokens", type=int, default=0, help="samples per micro-batch (default: the preset's)")
    r.add_argument("--workers", type=int, default=4 if DEVICE == "cuda" else 1, help="data loader workers")
    k = sub.add_parser("kernels")
    k.add_argument("--preset", default="base")
    k.add_argument("--batch", type=int, default=4)
    k.add_argument("--seconds", type=float, default=8.0)
    lab = sub.add_parser("labels")
    lab.add_argument("run", type=Path, help="a pipeline work folder trained up to it1-train")
    lab.add_argument("--seconds", type=float, default=120.0, help="audio labelled both ways")
    lab.add_argument("--layer", type=int, default=0, help="default: the middle layer (rounded up)")
    lab.add_argument("--units", type=int, default=100)
    c = sub.add_parser("corpora")
    c.add_argument("--train-hours", type=float, default=0.5)
    c.add_argument("--label-seconds", type=float, default=3600)
    child = sub.add_parser("train-child")
    child.add_argument("spec")
    for parser in (r, k, lab, c):
        parser.add_argument("--work", type=Path, default=OUT / "gpu-check-work")
    args = p.parse_args(argv)
    if args.command == "train-child":
        train_child(json.loads(args.spec))
        return 0
    result = {"resume": resume, "kernels": kernels, "labels": labels, "corpora": corpora}[args.command](args)
    print(json.dumps(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
