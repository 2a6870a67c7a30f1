"""Our model is the paper's: parity with torchaudio's HuBERT pretraining model, and
padding never changes an utterance's outputs."""
import pytest
import torch
import torchaudio

from pretrain.model_config import MaskConfig, ModelConfig
from pretrain.presets import model_preset
from pretrain.loss import hubert_loss
from pretrain.model import HubertPretrain, PretrainOutput, cosine_logits


def from_torchaudio(name: str) -> str:
    """torchaudio HuBERTPretrainModel parameter name -> ours."""
    name = name.replace("wav2vec2.feature_extractor.", "encoder.feature_extractor.")
    name = name.replace("wav2vec2.encoder.feature_projection.", "encoder.feature_projection.")
    name = name.replace("wav2vec2.encoder.transformer.", "encoder.encoder.")
    name = name.replace("mask_generator.mask_embedding", "encoder.masked_spec_embed")
    name = name.replace("logit_generator.final_proj.", "final_proj.0.")
    return name.replace("logit_generator.label_embeddings", "unit_embeddings.0")


class FixedMask(torch.nn.Module):
    """Stands in for torchaudio's mask generator so both models see the same mask."""

    def __init__(self, embedding, mask):
        super().__init__()
        self.embedding, self.mask = embedding, mask

    def forward(self, x, padding_mask):
        return torch.where(self.mask[..., None], self.embedding, x), self.mask


def reference_loss(logit_m, logit_u, penalty):
    """torchaudio examples/hubert's loss: CE summed over masked frames + 10 * penalty * count."""
    target = torch.zeros(logit_m.shape[0], dtype=torch.long)
    return torch.nn.functional.cross_entropy(logit_m, target, reduction="sum") + 10 * penalty * logit_m.shape[0]


def check_parity(reference, ours_config, num_units=100, batch=2, samples=16000):
    torch.manual_seed(0)
    ours = HubertPretrain(ours_config, [num_units])
    state = {from_torchaudio(k): v for k, v in reference.state_dict().items()}
    ours.load_state_dict(state, strict=True)
    reference.eval(), ours.eval()
    wav = torch.randn(batch, samples)
    with torch.no_grad():
        frames = ours.encoder.frames(torch.tensor([samples])).item()
        mask = torch.zeros(batch, frames, dtype=torch.bool)
        mask[:, 5:25] = True
        mask[1, 30:40] = True
        labels = torch.randint(0, num_units, (batch, frames))
        reference.mask_generator = FixedMask(reference.mask_generator.mask_embedding, mask)
        logit_m, logit_u, penalty = reference(wav, labels)
        out = ours(wav, mask=mask)
    ours_m = out.logits[0][mask]
    # torchaudio puts the target's logit first, then every unit with the target's slot at -inf.
    target_m = labels[mask]
    assert torch.allclose(ours_m.gather(1, target_m[:, None])[:, 0], logit_m[:, 0], atol=1e-4)
    others = logit_m[:, 1:].clone()
    others[torch.arange(len(target_m)), target_m] = ours_m[torch.arange(len(target_m)), target_m]
    assert (ours_m - others).abs().max() <= 1e-4
    ours_loss = hubert_loss(out, [labels], normalizer=1.0).loss
    assert abs(ours_loss - reference_loss(logit_m, logit_u, penalty)) <= 1e-4 * max(1.0, abs(ours_loss.item()))
    assert abs(out.feature_penalty - penalty) <= 1e-6


def test_parity_with_torchaudio_base():
    torch.manual_seed(0)
    check_parity(torchaudio.models.hubert_pretrain_base(num_classes=100), model_preset("base"))


@pytest.mark.parametrize("conv_bias", [False, True])  # fairseq's HuBERT LARGE; Hugging Face LARGE configs
def test_parity_with_torchaudio_large_style(conv_bias):
    kwargs = dict(extractor_mode="layer_norm", extractor_conv_layer_config=None, extractor_conv_bias=conv_bias,
                  encoder_embed_dim=128, encoder_projection_dropout=0.0, encoder_pos_conv_kernel=16,
                  encoder_pos_conv_groups=4, encoder_num_layers=3, encoder_num_heads=4,
                  encoder_attention_dropout=0.0, encoder_ff_interm_features=256, encoder_ff_interm_dropout=0.0,
                  encoder_dropout=0.0, encoder_layer_norm_first=True, encoder_layer_drop=0.0,
                  mask_prob=0.8, mask_selection="static", mask_other=0.0, mask_length=10, no_mask_overlap=False,
                  mask_min_space=1, mask_channel_prob=0.0, mask_channel_selection="static", mask_channel_other=0.0,
                  mask_channel_length=10, no_mask_channel_overlap=False, mask_channel_min_space=1,
                  skip_masked=False, skip_nomask=False, num_classes=50, final_dim=64, feature_grad_mult=None)
    torch.manual_seed(0)
    reference = torchaudio.models.hubert_pretrain_model(**kwargs)
    config = ModelConfig(feat_extract_norm="layer", conv_bias=conv_bias, hidden_size=128, num_hidden_layers=3,
                         num_attention_heads=4, intermediate_size=256, do_stable_layer_norm=True,
                         num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, final_dim=64, normalize=False)
    biases = [k for k in reference.state_dict() if "feature_extractor" in k and k.endswith("conv.bias")]
    assert len(biases) == (7 if conv_bias else 0)
    check_parity(reference, config, num_units=50)


def test_a_checkpoint_keeps_conv_biases_and_old_ones_load_without(tmp_path):
    from pretrain.model_io import load_pretrain_model, model_state

    torch.manual_seed(0)
    config = model_preset("tiny")
    config.feat_extract_norm, config.conv_bias = "layer", True
    model = HubertPretrain(config, [10]).eval()
    torch.save(model_state(model), tmp_path / "bias.pt")
    loaded = load_pretrain_model(tmp_path / "bias.pt").eval()
    assert loaded.config.conv_bias
    wav = torch.randn(1, 8000)
    with torch.no_grad():
        assert torch.equal(loaded.encoder(wav).last_hidden, model.encoder(wav).last_hidden)
    old = model_state(HubertPretrain(model_preset("tiny"), [10]))
    del old["model_config"]["conv_bias"]  # written before the field existed
    torch.save(old, tmp_path / "old.pt")
    assert not load_pretrain_model(tmp_path / "old.pt").config.conv_bias


@pytest.mark.parametrize("norm", ["group", "layer"])
def test_padded_batch_equals_each_utterance_alone(norm):
    torch.manual_seed(0)
    config = model_preset("tiny")
    config.feat_extract_norm, config.normalize = norm, norm == "layer"
    model = HubertPretrain(config, [10]).eval()
    lengths = torch.tensor([16000, 9000, 4000])
    wav = torch.randn(3, 16000)
    for i, n in enumerate(lengths):
        wav[i, n:] = 0.0
    with torch.no_grad():
        batch = model.encoder(wav, lengths)
        for i, n in enumerate(lengths.tolist()):
            alone = model.encoder(wav[i:i + 1, :n])
            frames = alone.layers[-1].shape[1]
            assert not batch.padding[i, :frames].any() and batch.padding[i, frames:].all()
            for got, want in zip(batch.layers, alone.layers):
                assert (got[i, :frames] - want[0]).abs().max() <= 1e-4


def test_masks_never_cover_padding_and_loss_ignores_it():
    torch.manual_seed(0)
    model = HubertPretrain(model_preset("tiny"), [10])
    lengths = torch.tensor([16000, 6000])
    out = model(torch.randn(2, 16000), lengths)
    assert not (out.mask & out.padding).any() and out.mask[1].any()
    targets = torch.randint(0, 10, out.mask.shape)
    loss = hubert_loss(out, [targets])
    assert loss.num_masked == out.mask.sum() and torch.isfinite(loss.loss)
    loss.loss.backward()
    assert model.encoder.feature_extractor.conv_layers[0].conv.weight.grad is not None


def test_logits_and_loss_are_float32_under_bf16_autocast():
    """Under bf16 autocast the head and the loss still run in float32: the loss equals the float32
    loss computed from the same bf16-trained features, and the logits are float32."""
    torch.manual_seed(0)
    model = HubertPretrain(model_preset("tiny"), [100, 50]).eval()
    wav, lengths = torch.randn(2, 16000), torch.tensor([16000, 11000])
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(wav, lengths)
        targets = [torch.randint(0, k, out.mask.shape) for k in (100, 50)]
        loss = hubert_loss(out, targets, unmasked_weight=0.5)
    assert [logits.dtype for logits in out.logits] == [torch.float32, torch.float32]
    with torch.no_grad():  # the same features, head and loss in float32 outside autocast
        hidden = out.hidden.float()
        logits = [cosine_logits(proj(hidden), emb, model.config.logit_temp)
                  for proj, emb in zip(model.final_proj, model.unit_embeddings)]
        want = hubert_loss(PretrainOutput(logits, out.mask, out.padding, out.feature_penalty, out.hidden),
                           targets, unmasked_weight=0.5)
    for got, expected in ((loss.loss, want.loss), (loss.masked_ce, want.masked_ce), (loss.unmasked_ce, want.unmasked_ce)):
        assert got.dtype == torch.float32 and abs(got - expected) <= 1e-5 * abs(expected)


def test_initialisation_follows_fairseq():
    """Kaiming-normal CNN, N(0, 0.02) transformer weights with zero biases, positional conv
    N(0, sqrt(4 / (kernel * dim))) before its weight norm. torchaudio's pretraining model has the
    same statistics except the positional conv (its weight norm discards that init)."""
    torch.manual_seed(0)
    ours = HubertPretrain(model_preset("base"), [100]).state_dict()
    reference = {from_torchaudio(k): v for k, v in
                 torchaudio.models.hubert_pretrain_base(num_classes=100).state_dict().items()}
    assert set(ours) == set(reference)
    for name, value in ours.items():
        if "pos_conv_embed.conv.parametrizations" in name:
            continue
        ref = reference[name].float()
        sampling = 5 / value.numel() ** 0.5  # five standard errors of a sample statistic
        assert abs(value.std().item() - ref.std().item()) <= (0.03 + sampling) * ref.std().item() + 1e-6, name
        assert abs(value.mean().item() - ref.mean().item()) <= sampling * ref.std().item() + 1e-6, name
    direction = ours["encoder.encoder.pos_conv_embed.conv.parametrizations.weight.original1"]
    assert abs(direction.std().item() / (4 / (128 * 768)) ** 0.5 - 1) < 0.02
