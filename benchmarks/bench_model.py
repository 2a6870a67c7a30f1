"""BASE forward + backward: our HubertPretrain vs torchaudio's hubert_pretrain_base, same batch,
fp32 on the CPU, one run; each model in its own process so peak memory is its own.
On a GPU (when present) also bf16 and the model FLOPs utilisation.

    .venv/bin/python benchmarks/bench_model.py [--batch 2] [--seconds 4] [--steps 3]
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FLOP_PER_AUDIO_SECOND = 45e9  # BASE forward + backward, SPEC.md


def measure(which: str, batch: int, seconds: float, steps: int, device: str, dtype: str) -> dict:
    import torch

    sys.path.insert(0, str(ROOT))
    torch.manual_seed(0)
    samples = int(seconds * 16000)
    wav = torch.randn(batch, samples, device=device)
    cast = {"bf16": torch.bfloat16}.get(dtype)
    if which == "ours":
        from pretrain.config import model_preset
        from pretrain.loss import hubert_loss
        from pretrain.model import HubertPretrain

        model = HubertPretrain(model_preset("base"), [500]).to(device).train()
        frames = model.encoder.frames(torch.tensor([samples])).item()
        labels = torch.randint(0, 500, (batch, frames), device=device)

        def step():
            out = model(wav)
            return hubert_loss(out, [labels]).loss
    else:
        import torchaudio

        model = torchaudio.models.hubert_pretrain_base(num_classes=500).to(device).train()
        frames = (samples - 400) // 320 + 1
        labels = torch.randint(0, 500, (batch, frames), device=device)

        def step():
            logit_m, logit_u, penalty = model(wav, labels)
            target = torch.zeros(logit_m.shape[0], dtype=torch.long, device=device)
            return torch.nn.functional.cross_entropy(logit_m, target) + 10 * penalty

    times = []
    for index in range(steps + 1):  # the first step warms up
        if device == "cuda":
            torch.cuda.synchronize()
        begin = time.perf_counter()
        with torch.autocast(device, dtype=cast, enabled=cast is not None):
            loss = step()
        loss.backward()
        model.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()
        if index:
            times.append(time.perf_counter() - begin)
    peak = (torch.cuda.max_memory_allocated() / 2**30 if device == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)
    return {"seconds": min(times), "peak_gib": peak}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--devices", default="cpu,cuda", help="which of cpu (fp32) and cuda (bf16) to run")
    parser.add_argument("--child", nargs=3, metavar=("WHICH", "DEVICE", "DTYPE"))
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(*args.child[:1], args.batch, args.seconds, args.steps, *args.child[1:])))
        return
    import torch

    wanted = args.devices.split(",")
    runs = ([("cpu", "fp32")] if "cpu" in wanted else []) + (
        [("cuda", "bf16")] if "cuda" in wanted and torch.cuda.is_available() else [])
    audio = args.batch * args.seconds
    for device, dtype in runs:
        result = {}
        for which in ("torchaudio", "ours"):
            out = subprocess.run([sys.executable, __file__, "--batch", str(args.batch), "--seconds", str(args.seconds),
                                  "--steps", str(args.steps), "--child", which, device, dtype],
                                 capture_output=True, text=True, check=True)
            result[which] = json.loads(out.stdout.strip().splitlines()[-1])
        ta, ours = result["torchaudio"], result["ours"]
        print(f"BASE forward+backward, {args.batch} x {args.seconds:g} s, {device} {dtype}, "
              f"{torch.get_num_threads()} CPU threads")
        for name, r in result.items():
            mfu = ""
            if device == "cuda":
                mfu = f", MFU {FLOP_PER_AUDIO_SECOND * audio / r['seconds'] / 989e12:.1%} of 989 TFLOPS"
            print(f"  {name:<10} {r['seconds']:.3f} s/step, peak {r['peak_gib']:.2f} GiB{mfu}")
        print(f"  speed-up {ta['seconds'] / ours['seconds']:.2f}x, memory ratio ours/torchaudio "
              f"{ours['peak_gib'] / ta['peak_gib']:.2f}")


if __name__ == "__main__":
    main()
