"""BASE forward + backward: our HubertPretrain vs torchaudio's hubert_pretrain_base, same batch,
fp32 on the CPU; each model in its own process (so peak memory is its own), the two alternating
for `--rounds` rounds, the median of each reported. On a GPU (when present) also bf16 and MFU,
and `--parts` times the CNN and the positional conv alone, reference vs fast kernels.

    .venv/bin/python benchmarks/bench_model.py [--batch 2] [--seconds 4] [--steps 3] [--rounds 3]
    python benchmarks/bench_model.py --devices cuda --batch 8 --seconds 15 --parts
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FLOP_PER_AUDIO_SECOND = 45e9  # BASE forward + backward (bench_train.py derives it per preset)
PEAK_FLOPS = 989e12  # H100/H200 dense bf16, datasheet


def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def timed_steps(step, steps: int, device: str) -> list[float]:
    """Seconds of each of `steps` calls of step() after one warm-up call."""
    times = []
    for index in range(steps + 1):
        _sync(device)
        begin = time.perf_counter()
        step()
        _sync(device)
        if index:
            times.append(time.perf_counter() - begin)
    return times


def measure(which: str, batch: int, seconds: float, steps: int, device: str, dtype: str, kernels: str) -> dict:
    import torch

    sys.path.insert(0, str(ROOT))
    torch.manual_seed(0)
    samples = int(seconds * 16000)
    wav = torch.randn(batch, samples, device=device)
    cast = {"bf16": torch.bfloat16}.get(dtype)
    if which == "ours":
        from pretrain.presets import model_preset
        from pretrain.loss import hubert_loss
        from pretrain.model import HubertPretrain, set_kernels

        model = HubertPretrain(model_preset("base"), [500]).to(device).train()
        set_kernels(model, kernels)
        frames = model.encoder.frames(torch.tensor([samples])).item()
        labels = torch.randint(0, 500, (batch, frames), device=device)

        def loss():
            return hubert_loss(model(wav), [labels]).loss
    else:
        import torchaudio

        model = torchaudio.models.hubert_pretrain_base(num_classes=500).to(device).train()
        frames = (samples - 400) // 320 + 1
        labels = torch.randint(0, 500, (batch, frames), device=device)

        def loss():
            logit_m, logit_u, penalty = model(wav, labels)
            target = torch.zeros(logit_m.shape[0], dtype=torch.long, device=device)
            return torch.nn.functional.cross_entropy(logit_m, target) + 10 * penalty

    def step():
        with torch.autocast(device, dtype=cast, enabled=cast is not None):
            value = loss()
        value.backward()
        model.zero_grad(set_to_none=True)

    times = timed_steps(step, steps, device)
    peak = (torch.cuda.max_memory_allocated() / 2**30 if device == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)
    return {"seconds": min(times), "peak_gib": peak}


def kernel_parts(encoder, batch: int, seconds: float, device: str) -> dict:
    """The parts of `encoder` with fast and reference kernels, each with an input of `batch` x
    `seconds`: name -> (module, run), run(module) -> its output. The CNN (wav (B, S) -> (B, C, T))
    and the positional conv (hidden (B, T, D) -> (B, T, D))."""
    import torch

    wav = torch.randn(batch, int(seconds * 16000), device=device)
    hidden = torch.randn(batch, int(seconds * 50) - 1, encoder.config.hidden_size, device=device,
                         requires_grad=True)
    return {"cnn": (encoder.feature_extractor, lambda m: m(wav)[0]),
            "positional conv": (encoder.encoder.pos_conv_embed, lambda m: m(hidden))}


def measure_parts(batch: int, seconds: float, steps: int, device: str, dtype: str) -> dict:
    """Forward + backward of BASE's CNN and of its positional conv alone, on either kernels."""
    import torch

    sys.path.insert(0, str(ROOT))
    from pretrain.presets import model_preset
    from pretrain.model import HubertEncoder

    encoder = HubertEncoder(model_preset("base")).to(device).train()
    cast = {"bf16": torch.bfloat16}.get(dtype)
    result = {}
    for name, (module, run) in kernel_parts(encoder, batch, seconds, device).items():
        for kernels in ("reference", "fast"):
            module.kernels = kernels

            def step():
                with torch.autocast(device, dtype=cast, enabled=cast is not None):
                    out = run(module)
                out.float().square().mean().backward()

            result[f"{name}, {kernels}"] = statistics.median(timed_steps(step, steps, device))
    return result


def child(args, which: str, device: str, dtype: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--batch", str(args.batch), "--seconds", str(args.seconds),
                          "--steps", str(args.steps), "--kernels", args.kernels, "--child", which, device, dtype],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def compare(args, device: str, dtype: str) -> None:
    import torch

    runs = {"torchaudio": [], "ours": []}
    for _ in range(args.rounds):  # alternating, so drifts of a shared machine hit both
        for which in runs:
            runs[which].append(child(args, which, device, dtype))
    audio = args.batch * args.seconds
    print(f"BASE forward+backward, {args.batch} x {args.seconds:g} s, {device} {dtype}, ours on "
          f"{args.kernels} kernels, {torch.get_num_threads()} CPU threads, median of {args.rounds} alternating rounds")
    median = {which: statistics.median(r["seconds"] for r in rs) for which, rs in runs.items()}
    peak = {which: max(r["peak_gib"] for r in rs) for which, rs in runs.items()}
    for which, rs in runs.items():
        mfu = (f", MFU {FLOP_PER_AUDIO_SECOND * audio / median[which] / PEAK_FLOPS:.1%} of 989 TFLOP/s"
               if device == "cuda" else "")
        rounds = ", ".join(f"{r['seconds']:.3f}" for r in rs)
        print(f"  {which:<10} {median[which]:.3f} s/step (rounds {rounds}), peak {peak[which]:.2f} GiB{mfu}")
    paired = statistics.median(t["seconds"] / o["seconds"] for t, o in zip(runs["torchaudio"], runs["ours"]))
    print(f"  speed-up {median['torchaudio'] / median['ours']:.2f}x (ratio of medians; median of the rounds' "
          f"ratios {paired:.2f}x), memory ratio ours/torchaudio {peak['ours'] / peak['torchaudio']:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--kernels", default="auto", choices=("auto", "fast", "reference"))
    parser.add_argument("--devices", default="cpu,cuda", help="which of cpu (fp32) and cuda (bf16) to run")
    parser.add_argument("--parts", action="store_true", help="also time the CNN and positional conv alone")
    parser.add_argument("--child", nargs=3, metavar=("WHICH", "DEVICE", "DTYPE"))
    args = parser.parse_args()
    if args.child:
        which, device, dtype = args.child
        print(json.dumps(measure(which, args.batch, args.seconds, args.steps, device, dtype, args.kernels)))
        return
    import torch

    wanted = args.devices.split(",")
    runs = ([("cpu", "fp32")] if "cpu" in wanted else []) + (
        [("cuda", "bf16")] if "cuda" in wanted and torch.cuda.is_available() else [])
    for device, dtype in runs:
        compare(args, device, dtype)
        if args.parts:
            for name, seconds in measure_parts(args.batch, args.seconds, args.steps, device, dtype).items():
                print(f"  {name:<28} {1000 * seconds:8.1f} ms forward+backward")


if __name__ == "__main__":
    main()
