"""Teacher features from a trained model: the output of one transformer layer.

`LayerFeatures(encoder, layer)` is a `wav -> (frames, dim)` callable, the
`feature_fn` that clustering's dumps and labelling take.
"""
from __future__ import annotations

import numpy as np
import torch

from .model import HubertEncoder, _normalize_waveform

MAX_CHUNK = 1_600_000  # samples per forward pass (100 s), as fairseq's feature reader


class LayerFeatures:
    """Output of transformer layer `layer` (1-based), no masking, eval mode.

    The whole waveform is layer-normalised first when the model was trained so,
    then cut into chunks of at most `max_chunk` samples whose features are concatenated.
    """

    def __init__(self, encoder: HubertEncoder, layer: int, device: str = "cpu", max_chunk: int = MAX_CHUNK):
        if not 1 <= layer <= encoder.config.num_hidden_layers:
            raise ValueError(f"layer must be in 1..{encoder.config.num_hidden_layers}, got {layer}")
        self.encoder = encoder.to(device).eval()
        self.layer, self.device, self.max_chunk = layer, device, max_chunk

    def __call__(self, wav: np.ndarray) -> np.ndarray:
        """wav (samples,) float at 16 kHz -> (frames, hidden_size) float32."""
        return self.layers(wav, [self.layer])[self.layer]

    @torch.inference_mode()
    def layers(self, wav: np.ndarray, layers: list[int]) -> dict[int, np.ndarray]:
        """Several layers from one pass: {layer: (frames, hidden_size) float32}."""
        x = torch.as_tensor(np.asarray(wav, dtype=np.float32), device=self.device)[None, :]
        if self.encoder.config.normalize:
            x = _normalize_waveform(x, torch.tensor([x.shape[1]], device=self.device))
        chunks = {layer: [] for layer in layers}
        for start in range(0, x.shape[1], self.max_chunk):
            out = self.encoder(x[:, start:start + self.max_chunk], normalize=False, num_layers=max(layers))
            for layer in layers:
                chunks[layer].append(out.layers[layer - 1][0])
        return {layer: torch.cat(c).float().cpu().numpy() for layer, c in chunks.items()}
