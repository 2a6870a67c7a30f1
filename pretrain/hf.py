"""Export our encoder as a Hugging Face HuBERT directory, and import one back.

Our `HubertEncoder` uses Hugging Face's parameter names, so the weight mapping
is the identity apart from two historical spellings handled in `HF_RENAMES`.
The pretraining head (final_proj, unit embeddings) is never exported.
"""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any, Callable, NamedTuple

import torch

from clustering.audio import CONV_STRIDE, SAMPLE_RATE
from clustering.ownership import NotOurs, is_empty, mark
from clustering.path_checks import output_folder
from clustering.text_files import read_json

from .model_config import HEADS, ModelConfig
from .model import HubertEncoder
from .vocabulary import ctc_vocab

# Older Hugging Face checkpoints spell the positional conv's weight norm the pre-parametrization way.
HF_RENAMES = {"weight_g": "parametrizations.weight.original0", "weight_v": "parametrizations.weight.original1"}
HF_PREFIX = "hubert."  # what HubertForCTC / ...ForSequenceClassification put before encoder weights


class Rule(NamedTuple):
    """What we accept for one config.json field; a missing field takes transformers' `default`."""

    default: Any
    accepts: Callable[[Any], bool]
    supported: str  # said to the user when a value is refused


def _one_of(default, *others) -> Rule:
    """Exactly these JSON values (true is not 1)."""
    values = (default, *others)
    return Rule(default, lambda v: any(type(v) is type(w) and v == w for w in values),
                " or ".join(json.dumps(w) for w in values))


def _is_positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _is_layer_list(value) -> bool:
    return isinstance(value, (list, tuple)) and len(value) > 0 and all(_is_positive_int(v) for v in value)


def _positive_int(default: int) -> Rule:
    return Rule(default, _is_positive_int, "a positive integer")


def _layer_list(default: list[int]) -> Rule:
    return Rule(default, _is_layer_list, "a list of positive integers, one per conv layer")


def _is_positive_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


# config.json fields that change the encoder's outputs. Each value is either built here (the
# names shared with ModelConfig, and the conv lists) or refused; defaults are transformers'.
HF_ARCHITECTURE = {
    "hidden_size": _positive_int(768),
    "num_hidden_layers": _positive_int(12),
    "num_attention_heads": _positive_int(12),
    "intermediate_size": _positive_int(3072),
    "feat_extract_norm": _one_of("group", "layer"),
    "do_stable_layer_norm": _one_of(False, True),
    "conv_bias": _one_of(False, True),
    "conv_dim": _layer_list([512] * 7),
    "conv_kernel": _layer_list([10, 3, 3, 3, 3, 2, 2]),
    "conv_stride": Rule([5, 2, 2, 2, 2, 2, 2], lambda v: _is_layer_list(v) and math.prod(v) == CONV_STRIDE,
                        f"positive integers whose product is {CONV_STRIDE} (50 Hz frames at {SAMPLE_RATE} Hz)"),
    "num_conv_pos_embeddings": _positive_int(128),
    "num_conv_pos_embedding_groups": _positive_int(16),
    "layer_norm_eps": Rule(1e-5, _is_positive_number, "a positive number"),
    "hidden_act": _one_of("gelu"),
    "feat_extract_activation": _one_of("gelu"),  # also the positional conv's activation
    "feat_proj_layer_norm": _one_of(True),
    "conv_pos_batch_norm": _one_of(False),  # batch norm instead of the positional conv's weight norm
    "adapter_attn_dim": _one_of(None),  # attention adapters (MMS), read by the modelling code
}
MODEL_FIELDS = frozenset(field.name for field in dataclasses.fields(ModelConfig))
HF_FIXED = ("hidden_act", "feat_extract_activation", "feat_proj_layer_norm", "conv_pos_batch_norm")  # one value
# Mapped into ModelConfig under the same names; they act only in training. Defaults are transformers'.
HF_DROPOUTS = {"hidden_dropout": 0.1, "attention_dropout": 0.1, "activation_dropout": 0.1,
               "feat_proj_dropout": 0.0, "layerdrop": 0.1}
# Fields that leave the encoder's outputs alone: training-time masking, heads, bookkeeping.
HF_NOT_ENCODER = frozenset({
    "apply_spec_augment", "mask_time_prob", "mask_time_length", "mask_time_min_masks", "mask_feature_prob",
    "mask_feature_length", "mask_feature_min_masks", "initializer_range",
    "vocab_size", "final_dropout", "ctc_loss_reduction", "ctc_zero_infinity", "use_weighted_layer_sum",
    "classifier_proj_size", "num_labels", "id2label", "label2id", "problem_type",
    "pad_token_id", "bos_token_id", "eos_token_id",
    "num_feat_extract_layers",  # derived from conv_dim
    "model_type", "architectures", "transformers_version", "_name_or_path", "dtype", "torch_dtype",
    "output_hidden_states", "output_attentions", "return_dict", "chunk_size_feed_forward",
    "is_encoder_decoder",
})


def hf_config(config: ModelConfig, head: str = "none", vocab: dict | None = None,
              labels: list[str] | None = None) -> dict:
    """config.json contents for `head` ("none", "ctc", "classification")."""
    conv = config.conv_layers
    out = {
        "model_type": "hubert", "architectures": [HEADS[head]],
        **{name: getattr(config, name) for name in HF_ARCHITECTURE if name in MODEL_FIELDS},
        **{name: HF_ARCHITECTURE[name].default for name in HF_FIXED},
        "conv_dim": [d for d, _, _ in conv], "conv_kernel": [k for _, k, _ in conv],
        "conv_stride": [s for _, _, s in conv], "num_feat_extract_layers": len(conv),
        **{name: getattr(config, name) for name in HF_DROPOUTS},
    }
    if head == "ctc":
        out.update(vocab_size=len(vocab), pad_token_id=vocab["<pad>"], bos_token_id=vocab["<s>"],
                   eos_token_id=vocab["</s>"], ctc_loss_reduction="mean")
    if head == "classification":
        out.update(id2label={str(i): name for i, name in enumerate(labels)},
                   label2id={name: i for i, name in enumerate(labels)}, num_labels=len(labels))
    return out


def hf_architecture(data: dict, source: str = "config.json") -> dict:
    """The encoder-shaping fields of a config.json dict (HF_ARCHITECTURE), defaults filled in.

    Raises ValueError naming `source`, the field, its value and what is supported.
    """
    fields = {}
    for name, rule in HF_ARCHITECTURE.items():
        value = data.get(name, rule.default)
        if not rule.accepts(value):
            raise ValueError(f"{source}: {name} = {json.dumps(value, default=str)} is not supported; "
                             f"supported: {rule.supported}")
        fields[name] = value
    _check_together(fields, source)
    return fields


def _check_together(fields: dict, source: str) -> None:
    """Constraints between fields: one conv entry per layer in each list, divisible widths."""
    counts = {name: len(fields[name]) for name in ("conv_dim", "conv_kernel", "conv_stride")}
    if len(set(counts.values())) > 1:
        raise ValueError(f"{source}: conv_dim, conv_kernel and conv_stride have {counts} entries; "
                         "supported: the same number, one per conv layer")
    for divisor in ("num_attention_heads", "num_conv_pos_embedding_groups"):
        if fields["hidden_size"] % fields[divisor]:
            raise ValueError(f"{source}: {divisor} = {fields[divisor]} does not divide hidden_size = "
                             f"{fields['hidden_size']}; supported: a divisor of hidden_size")


def config_from_hf(data: dict, normalize: bool | None = None, source: str = "config.json") -> ModelConfig:
    """ModelConfig from a Hugging Face config.json dict (`normalize` from its preprocessor).

    Every field that changes the encoder is checked by `hf_architecture`; dropouts missing
    from `data` take transformers' defaults.
    """
    fields = hf_architecture(data, source)
    settings = {name: value for name, value in fields.items() if name in MODEL_FIELDS}
    settings.update({name: data.get(name, default) for name, default in HF_DROPOUTS.items()})
    norm = fields["feat_extract_norm"]
    return ModelConfig(conv_layers=tuple(zip(fields["conv_dim"], fields["conv_kernel"], fields["conv_stride"])),
                       normalize=(norm == "layer") if normalize is None else normalize,
                       feature_grad_mult=0.1 if norm == "group" else 1.0, **settings)


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def export_folder(out_dir: str | Path) -> Path:
    """`out_dir` made (or found empty) and marked as an export: an export is never written over
    other files, so it never mixes with an earlier one (`hubert export` moves its own earlier
    export aside first)."""
    out = Path(out_dir).expanduser()
    if out.exists() and not (out.is_dir() and is_empty(out)):
        raise NotOurs(f"{out}: not empty; an export goes into a new or empty folder, so no file of another "
                      "model is left beside it: give another folder")
    output_folder(out)
    mark(out, "export")
    return out


def export_hf(encoder: HubertEncoder, out_dir: str | Path, head: str = "none",
              vocab_tokens: list[str] | None = None, labels: list[str] | None = None) -> Path:
    """Write config.json, model.safetensors, preprocessor_config.json (+ tokenizer for ctc, whose
    vocabulary is SPECIAL_TOKENS then `vocab_tokens`: nothing is invented when they are missing)."""
    from safetensors.torch import save_file

    if head not in HEADS:
        raise ValueError(f"unknown head {head!r}; choose one of {', '.join(HEADS)}")
    if head == "classification" and not labels:
        raise ValueError("--head classification needs --labels a,b,c")
    out = export_folder(out_dir)
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
        special = {"unk_token": "<unk>", "pad_token": "<pad>", "bos_token": "<s>", "eos_token": "</s>"}
        _write_json(out / "special_tokens_map.json", {k: v for k, v in special.items() if v})
        _write_json(out / "tokenizer_config.json", {**special, "tokenizer_class": "Wav2Vec2CTCTokenizer",
                                                    "word_delimiter_token": "|", "do_lower_case": False,
                                                    "processor_class": "Wav2Vec2Processor"})
    _write_json(out / "preprocessor_config.json", preprocessor)
    return out


def import_hf(directory: str | Path) -> HubertEncoder:
    """Load a Hugging Face HuBERT directory (as save_pretrained writes it) into our encoder.

    Raises ValueError naming any config.json field whose value changes the network in a way we
    do not build (see HF_ARCHITECTURE), and listing every encoder weight that is missing or
    left unused. Head weights of ForCTC / ForSequenceClassification models are ignored.
    """
    directory = Path(directory)
    if not (directory / "config.json").is_file():
        raise FileNotFoundError(f"{directory}: no config.json, so not a Hugging Face model folder; give a folder "
                                "written by save_pretrained or `hubert export`")
    data = _read_json_object(directory / "config.json")
    if data.get("model_type") != "hubert":
        raise ValueError(f"{directory}/config.json: model_type {data.get('model_type')!r}, expected 'hubert'")
    pre = directory / "preprocessor_config.json"
    normalize = _read_json_object(pre).get("do_normalize") if pre.exists() else None
    encoder = HubertEncoder(config_from_hf(data, normalize, f"{directory}/config.json"))
    state = _encoder_state(_read_weights(directory))
    result = encoder.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(f"{directory}: weights do not fit a HuBERT encoder: missing "
                         f"{result.missing_keys}, unused {result.unexpected_keys}")
    return encoder


def _read_json_object(path: Path) -> dict:
    """A JSON object from `path`; one line naming the file and the fix for anything else."""
    fix = "re-save the model with save_pretrained (or `hubert export`)"
    data = read_json(path, fix)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object of settings, got {type(data).__name__}; {fix}")
    return data


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
