"""The fast paths compute the reference's function: the matmul CNN and the FFT positional conv
equal nn.Conv1d in fp32, the training step reads nothing back between logs, crops on a grid."""
import collections
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pretrain.cnn import FeatureExtractor, strided_matmul_conv
from pretrain.model_config import ModelConfig
from pretrain.presets import model_preset
from pretrain.labelled_audio import batch_length, collate
from pretrain.loss import hubert_loss
from pretrain.model import HubertPretrain, set_kernels
from pretrain.presets import train_preset
from pretrain.train_config import apply_overrides
from pretrain.transformer import PositionalConv, fft_size

# A LARGE-style stack (layer norm in every conv, conv biases as Hugging Face LARGE configs have) and
# a custom stack with other kernels whose strides still multiply to 320.
LARGE_STYLE = ModelConfig(feat_extract_norm="layer", conv_bias=True)
CUSTOM = ModelConfig(conv_layers=((64, 8, 4), (64, 5, 4), (96, 4, 2), (96, 7, 5), (128, 1, 1), (128, 3, 2)))
STACKS = {"tiny": model_preset("tiny"), "small": model_preset("small"), "base": model_preset("base"),
          "large-style": LARGE_STYLE, "custom": CUSTOM}


def speech_like(batch: int, samples: int) -> torch.Tensor:
    """Low-passed noise with a DC offset: nearly collinear 10-sample patches, the hard case for
    statistics folded into the first layer's weights."""
    noise = torch.randn(batch, samples + 64)
    smooth = torch.nn.functional.avg_pool1d(noise[:, None], 16, 1)[:, 0, :samples]
    return 0.3 * smooth + 0.05 * torch.randn(batch, samples) + 0.02


def randomised(extractor: FeatureExtractor) -> FeatureExtractor:
    """Norm affines and biases away from their 1/0 initialisation, so they are really tested."""
    for name, value in extractor.named_parameters():
        if not name.endswith("conv.weight"):
            torch.nn.init.normal_(value, mean=1.0 if name.endswith("norm.weight") else 0.0, std=0.3)
    return extractor


@pytest.mark.parametrize("name", list(STACKS))
def test_fast_cnn_equals_the_reference_convolutions(name):
    config = STACKS[name]
    torch.manual_seed(0)
    extractor = randomised(FeatureExtractor(config.conv_layers, config.feat_extract_norm, config.conv_bias))
    wav = speech_like(3, 24000)
    for lengths in (None, torch.tensor([24000, 17000, 6000])):  # unpadded, and a padded batch
        extractor.kernels = "reference"
        want, want_frames = extractor(wav, lengths)
        extractor.kernels = "fast"
        got, got_frames = extractor(wav, lengths)
        assert got.shape == want.shape and got.is_contiguous()
        assert (got - want).abs().max() <= 1e-5, name
        assert lengths is None and got_frames is None or torch.equal(got_frames, want_frames)


def test_fast_cnn_gradients_equal_the_reference():
    torch.manual_seed(0)
    config = model_preset("small")
    extractor = randomised(FeatureExtractor(config.conv_layers, config.feat_extract_norm, config.conv_bias))
    wav, lengths = speech_like(2, 16000), torch.tensor([16000, 11000])
    grads = {}
    for kernels in ("reference", "fast"):
        extractor.kernels = kernels
        features, _ = extractor(wav, lengths)
        grads[kernels] = torch.autograd.grad((features * features.detach().cos()).sum(), list(extractor.parameters()))
    for want, got in zip(grads["reference"], grads["fast"]):
        assert (got - want).abs().max() <= 1e-4 * max(1.0, want.abs().max().item())


def test_strided_matmul_conv_is_conv1d_for_any_kernel_and_stride():
    torch.manual_seed(0)
    for kernel, stride in ((3, 2), (2, 2), (7, 3), (5, 1), (1, 1), (4, 5)):
        x, weight, bias = torch.randn(2, 41, 6), torch.randn(5, 6, kernel), torch.randn(5)
        want = torch.nn.functional.conv1d(x.transpose(1, 2), weight, bias, stride=stride).transpose(1, 2)
        assert (strided_matmul_conv(x, weight, stride, bias) - want).abs().max() <= 1e-5, (kernel, stride)


@pytest.mark.parametrize("dim,kernel,groups,frames", [(768, 128, 16, 180), (256, 64, 16, 77), (64, 16, 4, 50),
                                                      (32, 7, 2, 13), (32, 7, 2, 1)])
def test_fft_positional_conv_equals_the_grouped_convolution(dim, kernel, groups, frames):
    torch.manual_seed(0)
    conv = PositionalConv(dim, kernel, groups)
    torch.nn.init.normal_(conv.conv.bias)
    x = torch.randn(2, frames, dim, requires_grad=True)
    probe = torch.randn(2, frames, dim)  # d loss / d output
    outputs, grads = {}, {}
    for kernels in ("reference", "fast"):
        conv.kernels = kernels
        outputs[kernels] = conv(x)
        grads[kernels] = torch.autograd.grad((outputs[kernels] * probe).sum(), [x, *conv.parameters()])
    assert (outputs["fast"] - outputs["reference"]).abs().max() <= 1e-5
    for want, got in zip(grads["reference"], grads["fast"]):
        assert (got - want).abs().max() <= 1e-5 * max(1.0, want.abs().max().item())


def test_fft_lengths_are_7_smooth_long_enough_and_four_per_octave():
    sizes = set()
    for n in range(1, 3000, 7):
        size = fft_size(n)
        rest = size
        for p in (2, 3, 5, 7):
            while rest % p == 0:
                rest //= p
        assert size >= n and rest == 1 and size < 1.25 * n + 2
        if 512 < n <= 1024:
            sizes.add(size)
    assert sizes == {640, 768, 896, 1024}


def test_compiled_positional_conv_traces_one_graph_per_octave_of_frames():
    """torch.compile guards on the octave of the frame count only, not on each crop length."""
    torch.manual_seed(0)
    conv = PositionalConv(32, 16, 4)
    conv.kernels = "fast"
    graphs = []

    def counting_backend(graph, inputs):
        graphs.append(graph)
        return graph.forward

    torch._dynamo.reset()
    compiled = torch.compile(conv, backend=counting_backend)
    for frames in (130, 150, 170, 190, 210, 230):  # frames + 15 in (128, 256]: one octave
        x = torch.randn(2, frames, 32)
        conv.kernels = "reference"
        want = conv(x)
        conv.kernels = "fast"
        assert (compiled(x) - want).abs().max() <= 1e-5
    assert len(graphs) == 2  # the first length as a static graph, then one with the frames dynamic
    for frames in (50, 400):  # two other octaves: one graph each
        compiled(torch.randn(2, frames, 32))
    assert len(graphs) == 4
    torch._dynamo.reset()


@pytest.mark.parametrize("norm", ["group", "layer"])
def test_the_whole_encoder_is_the_same_on_either_kernels(norm):
    torch.manual_seed(0)
    config = model_preset("tiny")
    config.feat_extract_norm, config.normalize, config.conv_bias = norm, norm == "layer", norm == "layer"
    model = HubertPretrain(config, [10]).eval()
    wav, lengths = speech_like(2, 16000), torch.tensor([16000, 9000])
    with torch.no_grad():
        set_kernels(model, "reference")
        want = model.encoder(wav, lengths)
        set_kernels(model, "fast")
        got = model.encoder(wav, lengths)
    valid = ~want.padding  # padded frames carry no meaning (masked from attention and the loss)
    assert (got.last_hidden[valid] - want.last_hidden[valid]).abs().max() <= 1e-4


@pytest.mark.parametrize("choice, fast_runs", [("auto", False), ("reference", False), ("fast", True)])
def test_auto_kernels_run_the_reference_path_on_the_cpu(choice, fast_runs, monkeypatch):
    """Which path really ran (so parity tests against torchaudio on the CPU use nn.Conv1d)."""
    from pretrain import cnn, transformer

    calls = collections.Counter()
    for module, name in ((cnn, "strided_matmul_conv"), (transformer, "grouped_time_conv")):
        real = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *a, _real=real, _name=name, **k: (calls.update([_name]),
                                                                                   _real(*a, **k))[1])
    model = HubertPretrain(model_preset("tiny"), [10]).eval()
    set_kernels(model, choice)
    with torch.no_grad():
        model.encoder(torch.randn(1, 8000))
    assert bool(calls["strided_matmul_conv"]) == fast_runs and bool(calls["grouped_time_conv"]) == fast_runs
    with pytest.raises(ValueError, match="kernels must be one of"):
        set_kernels(model, "quick")


@pytest.mark.parametrize("kernels", ["reference", "fast"])
def test_forward_and_loss_trace_as_one_graph(kernels):
    """No `.item()`, `bool(tensor)` or data-dependent shape anywhere from waveform to loss: the
    whole step traces without a graph break, i.e. nothing waits for the GPU."""
    torch.manual_seed(0)
    model = HubertPretrain(model_preset("tiny"), [10])
    set_kernels(model, kernels)
    wav, lengths = torch.randn(2, 8000), torch.tensor([8000, 6000])
    targets = torch.randint(0, 10, (2, model.encoder.frames(torch.tensor([8000])).item()))

    def step(wav, lengths):
        return hubert_loss(model(wav, lengths), [targets]).loss

    torch._dynamo.reset()
    traced = torch.compile(step, fullgraph=True, backend="eager")
    assert torch.isfinite(traced(wav, lengths)) and torch.isfinite(traced(wav, None))


def test_between_logs_the_trainer_reads_only_host_side_batch_lengths(tmp_path, monkeypatch):
    """Every read of a tensor's value (item, bool, float, tolist, cpu, ...) during training is
    attributed to the innermost pretrain function that asked for it: per update only the host's
    batch lengths are read; the device's statistics are read at the log (`read`), once per log."""
    sys.path.insert(0, str(Path(__file__).parent))
    from tone_corpus import make_tone_corpus
    from pretrain.trainer import train

    root, labels = make_tone_corpus(tmp_path / "tones")
    reads = collections.Counter()
    for method in ("item", "tolist", "__bool__", "__float__", "__int__", "cpu", "numpy"):
        monkeypatch.setattr(torch.Tensor, method, _spy(getattr(torch.Tensor, method), method, reads))
    config = apply_overrides(train_preset("tiny"), dict(max_tokens=64000, min_sample_size=8000, valid_every=1000,
                                                        log_every=3, save_every=1000, max_updates=6, num_workers=0))
    train(root, [labels], tmp_path / "out", model_preset("tiny"), config, log=lambda m: None)
    per_update = {key for key in reads if key[1] not in ("read", "validate", "next")}  # next: DataLoader's seed
    assert per_update == {("labelled_audio.py", "padded", "__bool__"), ("trainer.py", "count_batch", "__float__")}
    assert reads[("trainer.py", "read", "tolist")] == 2 * 2  # two log reads: host counts, device sums


def test_validation_makes_two_passes_per_batch_and_reads_the_device_once(tmp_path, monkeypatch):
    """One masked pass (loss, accuracies) and one unmasked encoder pass (layers, units predicted)
    per batch; the statistics of every batch and layer come back in one read at the end."""
    sys.path.insert(0, str(Path(__file__).parent))
    from tone_corpus import make_tone_corpus
    from pretrain.distributed import Workers
    from pretrain.labelled_audio import LabelledAudio
    from pretrain import trainer

    root, labels = make_tone_corpus(tmp_path / "tones", utterances=(2, 9))
    config = apply_overrides(train_preset("tiny"), dict(max_tokens=40000, min_sample_size=8000))
    data = LabelledAudio(root / "valid.tsv", [labels], config.min_sample_size)
    torch.manual_seed(0)
    model = HubertPretrain(model_preset("tiny"), data.num_units)
    passes, batches = [], []
    model.encoder.register_forward_hook(lambda module, args, out: passes.append(out.mask is not None))
    monkeypatch.setattr(trainer, "_stats", _counting(batches, trainer._stats))
    reads = collections.Counter()
    for method in ("item", "tolist", "__bool__", "__float__", "__int__", "cpu", "numpy"):
        monkeypatch.setattr(torch.Tensor, method, _spy(getattr(torch.Tensor, method), method, reads))
    metrics = trainer.validate(model, model, data, config, Workers(0, 1, torch.device("cpu")))
    assert len(batches) >= 3 and passes == [True, False] * len(batches)  # masked, then unmasked, per batch
    on_the_device = {key: n for key, n in reads.items() if key[0] != "labelled_audio.py"}  # the rest: host batches
    assert on_the_device == {("trainer.py", "validate", "tolist"): 1}, reads
    assert len(metrics["layer_variance"]) == 2 and 1 <= metrics["units_predicted"] <= data.num_units[0]


def _counting(calls: list, real):
    def wrapper(*args):
        calls.append(1)
        return real(*args)
    return wrapper


def _spy(real, method: str, reads: collections.Counter):
    def wrapper(self, *args, **kwargs):
        frame = sys._getframe(1)
        while frame is not None and "/pretrain/" not in frame.f_code.co_filename:
            frame = frame.f_back
        if frame is not None:
            reads[(Path(frame.f_code.co_filename).name, frame.f_code.co_name, method)] += 1
        return real(self, *args, **kwargs)
    return wrapper


def test_crop_multiple_rounds_crops_down_and_pads_up():
    assert batch_length([50_000, 41_234], True, 250_000) == 41_234  # 0: fairseq's exact crop
    assert batch_length([50_000, 41_234], True, 250_000, 16_000) == 32_000
    assert batch_length([300_000, 280_000], True, 250_000, 16_000) == 240_000  # the cap, then the grid
    assert batch_length([9_000, 12_000], True, 250_000, 16_000) == 9_000  # shorter than one step: as is
    assert batch_length([50_000, 41_234], False, 250_000, 16_000) == 64_000
    rng = np.random.default_rng(0)
    items = [(rng.standard_normal(n).astype(np.float32), [np.zeros(n // 160, dtype=np.int64)])
             for n in (40_000, 35_500)]
    batch = collate(items, [100.0], True, 250_000, seed=0, crop_multiple=16_000)
    assert batch.wav.shape == (2, 32_000) and not batch.padded
    assert batch.targets[0].shape == (2, 99)


def test_fast_kernels_under_bf16_are_as_close_to_fp32_as_the_reference():
    """What benchmarks/gpu_check.sh checks on a GPU, on the CPU's bf16: the CNN, the positional conv
    and the whole encoder, forward and gradients."""
    import argparse

    from benchmarks import gpu_check

    result = gpu_check.kernels(argparse.Namespace(preset="tiny", batch=1, seconds=1.0))
    for name, part in result["parts"].items():
        assert part["ok"], (name, part)
        assert part["fast fp32"]["forward"] < 1e-5 and part["fast fp32"]["grads"] < 1e-5, name
        assert 1e-4 < part["fast bf16"]["forward"] < 0.05, name  # bf16 really ran, and stayed close
