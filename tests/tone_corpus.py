"""A learnable stand-in corpus for trainer tests: tones whose class follows a cycle.

Each 20 ms frame plays one of K tones; the class advances by one every
`run` frames, so a masked span can be inferred from its context. Labels are
the class per model frame (50 Hz), written as a label directory.
"""
import numpy as np
import soundfile as sf

from clustering.labels import LabelInfo, write_dictionary, write_labels
from clustering.manifest import write_manifest


def make_tone_corpus(root, num_units=8, utterances=(24, 4), seconds=(1.0, 1.6), run=3, seed=0):
    rng = np.random.default_rng(seed)
    audio, labels = root / "audio", root / "labels"
    audio.mkdir(parents=True)
    labels.mkdir()
    freqs = np.geomspace(200, 3200, num_units)
    for split, count in zip(("train", "valid"), utterances):
        entries, rows = [], []
        for i in range(count):
            frames = int(rng.uniform(*seconds) * 50)
            classes = (rng.integers(num_units) + np.arange(frames) // run) % num_units
            t = np.arange(320) / 16000
            wav = np.concatenate([0.3 * np.sin(2 * np.pi * freqs[c] * t + rng.uniform(0, 6.3)) for c in classes])
            wav = (wav + 0.01 * rng.standard_normal(len(wav))).astype(np.float32)
            name = f"{split}{i}.wav"
            sf.write(audio / name, wav, 16000, subtype="FLOAT")
            entries.append((name, len(wav)))
            rows.append(classes)
        write_manifest(root / f"{split}.tsv", audio, entries)
        write_labels(labels / f"{split}.km", rows)
    write_dictionary(labels, num_units)
    LabelInfo(num_units, 50.0, "tones", lines={"train": utterances[0], "valid": utterances[1]}).save(labels)
    return root, labels
