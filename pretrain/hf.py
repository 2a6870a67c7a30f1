"""Export our encoder as a Hugging Face HuBERT directory, and import one back.

Our `HubertEncoder` uses Hugging Face's parameter names, so the weight mapping
is the identity apart from two historical spellings handled in `HF_RENAMES`.
The pretraining head (final_proj, unit embeddings) is never exported.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from clustering.audio import SAMPLE_RATE

from .config import HEADS, ModelConfig
from .model import HubertEncoder

# Older Hugging Face checkpoints spell the positional conv's weight norm the pre-parametrization way.
HF_RENAMES = {"weight_g": "parametrizations.weight.original0", "weight_v": "parametrizations.weight.original1"}
HF_PREFIX = "hubert."  # what HubertForCTC / ...ForSequenceClassification put before encoder weights
DEFAULT_CTC_VOCAB = tuple("ETAONIHSRDLUMWCFGYPBVK'XJQZ")  # LibriSpeech's characters


def hf_config(config: ModelConfig, head: str = "none", vocab: dict | None = None,
              labels: list[str] | None = None) -> dict:
    """config.json contents for `head` ("none", "ctc", "classification")."""
    out = {
        "model_type": "hubert", "architectures": [HEADS[head]],
        "hidden_size": config.hidden_size, "num_hidden_layers": config.num_hidden_layers,
        "num_attention_heads": config.num_attention_heads, "intermediate_size": config.intermediate_size,
        "hidden_act": "gelu", "feat_extract_activation": "gelu", "feat_extract_norm": config.feat_extract_norm,
        "do_stable_layer_norm": config.do_stable_layer_norm, "feat_proj_layer_norm": True,
        "conv_dim": [d for d, _, _ in config.conv_layers], "conv_kernel": [k for _, k, _ in config.conv_layers],
        "conv_stride": [s for _, _, s in config.conv_layers], "conv_bias": False,
        "num_feat_extract_layers": len(config.conv_layers),
        "num_conv_pos_embeddings": config.num_conv_pos_embeddings,
        "num_conv_pos_embedding_groups": config.num_conv_pos_embedding_groups,
        "hidden_dropout": config.hidden_dropout, "attention_dropout": config.attention_dropout,
        "activation_dropout": config.activation_dropout, "feat_proj_dropout": config.feat_proj_dropout,
        "layerdrop": config.layerdrop, "layer_norm_eps": config.layer_norm_eps,
    }
    if head == "ctc":
        out.update(vocab_size=len(vocab), pad_token_id=vocab["<pad>"], ctc_loss_reduction="mean")
    if head == "classification":
        out.update(id2label={str(i): name for i, name in enumerate(labels)},
                   label2id={name: i for i, name in enumerate(labels)}, num_labels=len(labels))
    return out


def config_from_hf(data: dict, normalize: bool | None = None) -> ModelConfig:
    """ModelConfig from a Hugging Face config.json dict (`normalize` from its preprocessor)."""
    conv = tuple(zip(data["conv_dim"], data["conv_kernel"], data["conv_stride"]))
    norm = data.get("feat_extract_norm", "group")
    return ModelConfig(
        conv_layers=conv, feat_extract_norm=norm, hidden_size=data["hidden_size"],
        num_hidden_layers=data["num_hidden_layers"], num_attention_heads=data["num_attention_heads"],
        intermediate_size=data["intermediate_size"], do_stable_layer_norm=data.get("do_stable_layer_norm", False),
        num_conv_pos_embeddings=data.get("num_conv_pos_embeddings", 128),
        num_conv_pos_embedding_groups=data.get("num_conv_pos_embedding_groups", 16),
        hidden_dropout=data.get("hidden_dropout", 0.1), attention_dropout=data.get("attention_dropout", 0.1),
        activation_dropout=data.get("activation_dropout", 0.0), feat_proj_dropout=data.get("feat_proj_dropout", 0.1),
        layerdrop=data.get("layerdrop", 0.1), layer_norm_eps=data.get("layer_norm_eps", 1e-5),
        normalize=(norm == "layer") if normalize is None else normalize,
        feature_grad_mult=0.1 if norm == "group" else 1.0)


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def ctc_vocab(tokens: list[str] | tuple[str, ...] | None) -> dict[str, int]:
    """CTC vocabulary: <pad> (the blank) = 0, <unk> = 1, word delimiter | = 2, then `tokens`."""
    vocab = {"<pad>": 0, "<unk>": 1, "|": 2}
    for token in tokens or DEFAULT_CTC_VOCAB:
        vocab.setdefault(token, len(vocab))
    return vocab


def export_hf(encoder: HubertEncoder, out_dir: str | Path, head: str = "none",
              vocab_tokens: list[str] | None = None, labels: list[str] | None = None) -> Path:
    """Write config.json, model.safetensors, preprocessor_config.json (+ tokenizer for ctc)."""
    from safetensors.torch import save_file

    if head not in HEADS:
        raise ValueError(f"unknown head {head!r}; choose one of {', '.join(HEADS)}")
    if head == "classification" and not labels:
        raise ValueError("--head classification needs --labels a,b,c")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = encoder.config
    vocab = ctc_vocab(vocab_tokens) if head == "ctc" else None
    _write_json(out / "config.json", hf_config(config, head, vocab, labels))
    state = {k: v.detach().cpu().contiguous() for k, v in encoder.state_dict().items()}
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    preprocessor = {"feature_extractor_type": "Wav2Vec2FeatureExtractor", "feature_size": 1,
                    "sampling_rate": SAMPLE_RATE, "padding_value": 0.0, "padding_side": "right",
                    "do_normalize": config.normalize,
                    "return_attention_mask": config.feat_extract_norm == "layer"}
    if head == "ctc":
        preprocessor["processor_class"] = "Wav2Vec2Processor"
        _write_json(out / "vocab.json", vocab)
        special = {"unk_token": "<unk>", "pad_token": "<pad>", "bos_token": None, "eos_token": None}
        _write_json(out / "special_tokens_map.json", {k: v for k, v in special.items() if v})
        _write_json(out / "tokenizer_config.json", {**special, "tokenizer_class": "Wav2Vec2CTCTokenizer",
                                                    "word_delimiter_token": "|", "do_lower_case": False,
                                                    "processor_class": "Wav2Vec2Processor"})
    _write_json(out / "preprocessor_config.json", preprocessor)
    return out


def import_hf(directory: str | Path) -> HubertEncoder:
    """Load a Hugging Face HuBERT directory (as save_pretrained writes it) into our encoder.

    Raises ValueError listing every encoder weight that is missing or left unused.
    Head weights of ForCTC / ForSequenceClassification models are ignored.
    """
    directory = Path(directory)
    data = json.loads((directory / "config.json").read_text())
    if data.get("model_type") != "hubert":
        raise ValueError(f"{directory}/config.json: model_type {data.get('model_type')!r}, expected 'hubert'")
    pre = directory / "preprocessor_config.json"
    normalize = json.loads(pre.read_text()).get("do_normalize") if pre.exists() else None
    encoder = HubertEncoder(config_from_hf(data, normalize))
    state = _encoder_state(_read_weights(directory))
    result = encoder.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(f"{directory}: weights do not fit a HuBERT encoder: missing "
                         f"{result.missing_keys}, unused {result.unexpected_keys}")
    return encoder


def _read_weights(directory: Path) -> dict[str, torch.Tensor]:
    if (directory / "model.safetensors").exists():
        from safetensors.torch import load_file

        return load_file(str(directory / "model.safetensors"))
    if (directory / "pytorch_model.bin").exists():
        return torch.load(directory / "pytorch_model.bin", map_location="cpu", weights_only=True)
    raise FileNotFoundError(f"{directory}: no model.safetensors or pytorch_model.bin")


def _encoder_state(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Keep encoder weights (dropping a `hubert.` prefix and head weights), renamed to ours."""
    prefixed = any(k.startswith(HF_PREFIX) for k in weights)
    state = {}
    for key, value in weights.items():
        if prefixed:
            if not key.startswith(HF_PREFIX):
                continue  # lm_head, projector, classifier: heads, not encoder
            key = key[len(HF_PREFIX):]
        for old, new in HF_RENAMES.items():
            if key.endswith(old):
                key = key[: -len(old)] + new
        state[key] = value
    return state
