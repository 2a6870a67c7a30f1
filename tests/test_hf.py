"""Exports load in transformers with every encoder weight used, and give our hidden states."""
import json
import re

import numpy as np
import pytest
import torch
import transformers
from transformers import HubertConfig, HubertForCTC, HubertForSequenceClassification, HubertModel

from pretrain.presets import model_preset
from pretrain.hf import (HF_ARCHITECTURE, HF_DROPOUTS, HF_NOT_ENCODER, config_from_hf, export_hf, hf_config,
                         import_hf)
from pretrain.layer_features import LayerFeatures
from pretrain.model import HubertPretrain


def tiny(norm: str) -> HubertPretrain:
    torch.manual_seed(0)
    config = model_preset("tiny")
    config.feat_extract_norm, config.do_stable_layer_norm, config.normalize = norm, norm == "layer", norm == "layer"
    return HubertPretrain(config, [20]).eval()


@pytest.mark.parametrize("norm", ["group", "layer"])
def test_hubert_model_gives_our_hidden_states(tmp_path, norm):
    model = tiny(norm)
    export_hf(model.encoder, tmp_path)
    hf, info = HubertModel.from_pretrained(tmp_path, output_loading_info=True)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys"))
    assert json.loads((tmp_path / "preprocessor_config.json").read_text())["do_normalize"] == (norm == "layer")
    hf.eval()
    lengths = torch.tensor([16000, 11000, 7000])
    wav = torch.randn(3, 16000) * torch.arange(16000)[None, :].lt(lengths[:, None])
    with torch.no_grad():
        ours = model.encoder(wav, lengths)
        for i, n in enumerate(lengths.tolist()):
            # (hidden_states[L] is layer L's raw output; last_hidden_state has the closing norm)
            # HF expects the feature extractor to have normalised the waveform (do_normalize)
            x = wav[i:i + 1, :n]
            if model.config.normalize:
                x = (x - x.mean()) / torch.sqrt(x.var(unbiased=False) + 1e-5)
            result = hf(x, output_hidden_states=True)
            hidden = result.hidden_states
            frames = hidden[0].shape[1]
            assert (result.last_hidden_state[0] - ours.last_hidden[i, :frames]).abs().max() <= 1e-4
            for layer in range(1, model.config.num_hidden_layers + 1):
                diff = (hidden[layer][0] - ours.layers[layer - 1][i, :frames]).abs().max()
                assert diff <= 1e-4, (norm, i, layer, diff)


def test_ctc_and_classification_heads_load_with_only_the_head_new(tmp_path):
    model = tiny("group")
    export_hf(model.encoder, tmp_path / "ctc", head="ctc", vocab_tokens=list("abc"))
    ctc, info = HubertForCTC.from_pretrained(tmp_path / "ctc", output_loading_info=True)
    assert all(k.startswith("lm_head") for k in info["missing_keys"]) and not info["unexpected_keys"]
    assert ctc.config.vocab_size == 8 and ctc.config.pad_token_id == 0
    from transformers import Wav2Vec2CTCTokenizer
    tokenizer = Wav2Vec2CTCTokenizer.from_pretrained(tmp_path / "ctc")
    assert tokenizer.decode(tokenizer("ab c").input_ids) == "ab c"
    export_hf(model.encoder, tmp_path / "cls", head="classification", labels=["yes", "no", "maybe"])
    cls, info = HubertForSequenceClassification.from_pretrained(tmp_path / "cls", output_loading_info=True)
    assert all(k.startswith(("projector", "classifier")) for k in info["missing_keys"])
    assert not info["unexpected_keys"] and cls.config.id2label[2] == "maybe"


@pytest.mark.parametrize("norm", ["group", "layer"])
def test_imported_hf_model_gives_identical_outputs(tmp_path, norm):
    model = tiny(norm)
    export_hf(model.encoder, tmp_path / "a")
    hf = HubertModel.from_pretrained(tmp_path / "a")
    hf.save_pretrained(tmp_path / "b")  # as a user's directory would look
    (tmp_path / "b" / "preprocessor_config.json").write_text((tmp_path / "a" / "preprocessor_config.json").read_text())
    encoder = import_hf(tmp_path / "b").eval()
    wav = torch.randn(2, 12000)
    with torch.no_grad():
        for a, b in zip(model.encoder(wav).layers, encoder(wav).layers):
            assert torch.equal(a, b)


def test_layer_features_are_chunked_and_match_the_encoder():
    model = tiny("group")
    wav = np.random.default_rng(0).standard_normal(32000).astype(np.float32)
    whole = LayerFeatures(model.encoder, 2)(wav)
    with torch.no_grad():
        direct = model.encoder(torch.from_numpy(wav)[None]).layers[1][0].numpy()
    np.testing.assert_allclose(whole, direct, atol=1e-5)
    chunked = LayerFeatures(model.encoder, 2, max_chunk=16000)(wav)
    assert chunked.shape == (49 * 2, 64)  # two 1-s chunks of 49 frames each
    with pytest.raises(ValueError, match="layer must be in 1..2"):
        LayerFeatures(model.encoder, 3)


# A published LARGE model's shape (layer-norm CNN with conv biases, pre-LN), at tiny sizes.
TINY_LARGE_HF = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128,
                     conv_dim=[32] * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
                     feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True)


def hf_states(hf: HubertModel, wav: torch.Tensor) -> list[torch.Tensor]:
    """Each layer's raw output, then the final output (with the closing norm)."""
    with torch.no_grad():
        result = hf(wav, output_hidden_states=True)
    return list(result.hidden_states[1:]) + [result.last_hidden_state]


def test_hf_model_with_conv_bias_round_trips_through_import_and_export(tmp_path):
    torch.manual_seed(0)
    original = HubertModel(HubertConfig(**TINY_LARGE_HF)).eval()
    original.save_pretrained(tmp_path / "hf")
    encoder = import_hf(tmp_path / "hf").eval()
    assert encoder.config.conv_bias and encoder.config.do_stable_layer_norm
    wav = torch.randn(2, 12000)
    want = hf_states(original, wav)
    with torch.no_grad():
        ours = encoder(wav, normalize=False)  # transformers leaves normalising to its feature extractor
    for got, expected in zip(ours.layers + [ours.last_hidden], want):
        assert (got - expected).abs().max() <= 1e-4
    export_hf(encoder, tmp_path / "ours")
    assert json.loads((tmp_path / "ours" / "config.json").read_text())["conv_bias"] is True
    back, info = HubertModel.from_pretrained(tmp_path / "ours", output_loading_info=True)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys"))
    for got, expected in zip(hf_states(back.eval(), wav), want):
        assert (got - expected).abs().max() <= 1e-4


@pytest.mark.parametrize("field, value", [("hidden_act", "relu"), ("feat_extract_activation", "gelu_new"),
                                          ("feat_proj_layer_norm", False), ("conv_pos_batch_norm", True),
                                          ("conv_stride", [5, 2, 2, 2, 2, 2, 3])])
def test_a_network_we_do_not_build_is_refused_by_name(tmp_path, field, value):
    HubertConfig(**{**TINY_LARGE_HF, field: value}).save_pretrained(tmp_path)
    said = re.escape(f"config.json: {field} = {json.dumps(value)} is not supported; supported: ")
    with pytest.raises(ValueError, match=said):
        import_hf(tmp_path)


def test_every_field_of_the_installed_hubert_config_is_built_refused_or_irrelevant():
    """A field this transformers version adds must be classified here before it can slip through,
    and a field missing from config.json must mean what transformers means by it."""
    defaults = HubertConfig().to_dict()
    known = set(HF_ARCHITECTURE) | set(HF_DROPOUTS) | HF_NOT_ENCODER
    unknown = sorted(set(defaults) - known)
    assert not unknown, f"transformers {transformers.__version__}: HubertConfig fields not classified: {unknown}"
    ours = {name: rule.default for name, rule in HF_ARCHITECTURE.items()} | HF_DROPOUTS
    for name in set(ours) & set(defaults):
        theirs = list(defaults[name]) if isinstance(defaults[name], tuple) else defaults[name]
        assert ours[name] == theirs, name
    assert config_from_hf({}).conv_layers == config_from_hf(defaults).conv_layers == model_preset("base").conv_layers
    exported = hf_config(model_preset("tiny"))  # says every field transformers reads, in full
    assert set(HF_ARCHITECTURE) - set(exported) == {"adapter_attn_dim"}


def test_ctc_vocabulary_comes_from_the_transcripts_and_is_never_invented(tmp_path):
    from transformers import Wav2Vec2CTCTokenizer

    from pretrain.vocabulary import transcript_characters

    (tmp_path / "t.tsv").write_text("a/1\tñandú  y  café\nb/2\tcafé\n")
    tokens = transcript_characters(tmp_path / "t.tsv")
    assert tokens == sorted(set("ñandúycfé") | {"|"})
    export_hf(tiny("group").encoder, tmp_path / "ctc", head="ctc", vocab_tokens=tokens)
    tokenizer = Wav2Vec2CTCTokenizer.from_pretrained(tmp_path / "ctc")
    assert list(tokenizer.get_vocab())[:5] == ["<pad>", "<s>", "</s>", "<unk>", "|"]
    assert tokenizer.decode(tokenizer("ñandú café").input_ids) == "ñandú café"
    with pytest.raises(ValueError, match="a CTC head needs a vocabulary"):
        export_hf(tiny("group").encoder, tmp_path / "none", head="ctc")
    (tmp_path / "bad.tsv").write_text("a/1 no tab\n")
    with pytest.raises(ValueError, match=r"bad.tsv:1: expected 'uid<TAB>text'"):
        transcript_characters(tmp_path / "bad.tsv")
