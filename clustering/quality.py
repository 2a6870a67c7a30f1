"""How good are these units? Purity and PNMI against phones, usage, and teacher agreement.

From the joint distribution p(phone, unit) over aligned frames:
  phone purity   = sum over units of max over phones of p(phone, unit)
  cluster purity = sum over phones of max over units of p(phone, unit)
  PNMI           = I(phone; unit) / H(phone)
Labels at 50 Hz are compared with 100 Hz phones by repeating each label
(as fairseq's measure_teacher_quality upsamples); lengths that differ by up
to 2 label frames are trimmed, more is an error naming the utterance.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .audio import ALIGNMENT_RATE
from .manifest import Manifest

LENGTH_SLACK = 2  # label frames of length difference that are trimmed, not an error


@dataclass
class Paired:
    phones: np.ndarray  # (frames,) phone ids at ALIGNMENT_RATE
    units: np.ndarray  # (frames,) unit ids
    phone_names: list[str]
    utterances: int = 0
    missing_alignment: list[str] = field(default_factory=list)  # labelled, not aligned
    missing_labels: int = 0  # aligned, not labelled


def pair_frames(rows: list[np.ndarray], label_rate: float, manifest: Manifest,
                alignments: dict[str, list[str]]) -> Paired:
    """Frame-by-frame (phone, unit) pairs of every utterance present on both sides."""
    ratio = _label_ratio(label_rate)
    vocabulary: dict[str, int] = {}
    phones, units, missing = [], [], []
    uids = set()
    for i, row in enumerate(rows):
        uid = manifest.utterance_id(i)
        uids.add(uid)
        if uid not in alignments:
            missing.append(uid)
            continue
        aligned, up = utterance_pairs(row, label_rate, ratio, uid, alignments[uid])
        phones.append(np.array([vocabulary.setdefault(p, len(vocabulary)) for p in aligned]))
        units.append(up)
    extra = sum(1 for uid in alignments if uid not in uids)
    return Paired(np.concatenate(phones) if phones else np.zeros(0, int),
                  np.concatenate(units) if units else np.zeros(0, int),
                  list(vocabulary), len(phones), missing, extra)


def check_alignment_lengths(manifest: Manifest, alignments: dict[str, list[str]], source) -> int:
    """ValueError naming the first utterance of `manifest` whose alignment does not last as long as its
    audio (its MFCC frames at ALIGNMENT_RATE, within LENGTH_SLACK frames, as pair_frames allows);
    returns how many utterances of `manifest` have an alignment."""
    from .audio import MFCC_FRAMES, num_model_frames

    aligned = 0
    for i in range(len(manifest)):
        phones = alignments.get(manifest.utterance_id(i))
        if phones is None:
            continue
        aligned += 1
        frames = num_model_frames(manifest.sizes[i], MFCC_FRAMES)
        if abs(len(phones) - frames) > LENGTH_SLACK:
            raise ValueError(f"{source}: utterance {manifest.utterance_id(i)} has {len(phones)} frames at "
                             f"{ALIGNMENT_RATE} Hz, but its audio ({manifest.sizes[i]} samples) has {frames}; "
                             "these alignments belong to other audio: give the alignments of this audio")
    return aligned
def _label_ratio(label_rate: float) -> int:
    """Alignment frames per label (1 for 100 Hz labels, 2 for 50 Hz)."""
    ratio = ALIGNMENT_RATE / label_rate
    if ratio < 1 or not float(ratio).is_integer():
        raise ValueError(f"label rate {label_rate} Hz must divide {ALIGNMENT_RATE} Hz")
    return int(ratio)


def utterance_pairs(row: np.ndarray, label_rate: float, ratio: int, uid: str,
                    aligned: list[str]) -> tuple[list[str], np.ndarray]:
    """One utterance's (phones, units) at ALIGNMENT_RATE: each label repeated `ratio` times, both
    trimmed to the shorter; a length difference beyond LENGTH_SLACK labels is an error."""
    up = np.repeat(np.asarray(row), ratio)
    if abs(len(up) - len(aligned)) > LENGTH_SLACK * ratio:
        raise ValueError(f"utterance {uid}: {len(row)} labels at {label_rate:g} Hz = {len(up)} frames, "
                         f"but its alignment has {len(aligned)} frames at {ALIGNMENT_RATE} Hz; "
                         "check the label rate and that both come from the same audio")
    n = min(len(up), len(aligned))
    return aligned[:n], up[:n]


def utterance_counts(rows: list[np.ndarray], label_rate: float, manifest: Manifest,
                     alignments: dict[str, list[str]], phone_names: list[str], num_units: int):
    """(utterances, phones * units) sparse joint frame counts, one row per utterance of `manifest`
    (every one aligned), phone p and unit u at column p * num_units + u."""
    from scipy.sparse import csr_matrix

    ratio, index = _label_ratio(label_rate), {name: k for k, name in enumerate(phone_names)}
    codes, owners = [], []
    for i, row in enumerate(rows):
        uid = manifest.utterance_id(i)
        aligned, up = utterance_pairs(row, label_rate, ratio, uid, alignments[uid])
        codes.append(np.array([index[p] for p in aligned], dtype=np.int64) * num_units + up)
        owners.append(np.full(len(up), i, dtype=np.int64))
    codes, owners = (np.concatenate(x) if x else np.zeros(0, np.int64) for x in (codes, owners))
    return csr_matrix((np.ones(len(codes)), (owners, codes)), shape=(len(rows), len(phone_names) * num_units))


def joint_counts(phones: np.ndarray, units: np.ndarray, num_phones: int, num_units: int) -> np.ndarray:
    """(num_phones, num_units) frame counts."""
    counts = np.zeros((num_phones, num_units), dtype=np.float64)
    np.add.at(counts, (phones, units), 1)
    return counts


def purity_pnmi(counts: np.ndarray) -> dict[str, float]:
    """Phone purity, cluster purity and PNMI from a (phones, units) count matrix."""
    joint = counts / counts.sum()
    p_phone, p_unit = joint.sum(1), joint.sum(0)
    nonzero = joint > 0
    mutual = float((joint[nonzero] * np.log(joint[nonzero] / np.outer(p_phone, p_unit)[nonzero])).sum())
    h_phone = float(-(p_phone[p_phone > 0] * np.log(p_phone[p_phone > 0])).sum())
    return {"phone_purity": float(joint.max(0).sum()), "cluster_purity": float(joint.max(1).sum()),
            "pnmi": mutual / h_phone if h_phone > 0 else 0.0}


def unit_usage(rows: list[np.ndarray], num_units: int) -> dict:
    """Entropy (bits) and perplexity of unit use, dead units, mean segment length in frames."""
    frames = np.concatenate(rows) if rows else np.zeros(0, int)
    counts = np.bincount(frames, minlength=num_units).astype(np.float64)
    p = counts[counts > 0] / max(1.0, counts.sum())
    entropy = float(-(p * np.log2(p)).sum())
    runs = sum(int(np.count_nonzero(np.diff(r)) + 1) for r in rows if len(r))
    return {"num_units": num_units, "usage_entropy_bits": entropy, "usage_perplexity": 2 ** entropy,
            "dead_units": int((counts == 0).sum()), "mean_segment_frames": len(frames) / max(1, runs),
            "unit_counts": counts.astype(int).tolist()}


def teacher_agreement(rows_a: list[np.ndarray], rate_a: float, rows_b: list[np.ndarray], rate_b: float) -> dict:
    """NMI and V-measure between two teachers' labels of the same utterances (no alignments needed)."""
    from sklearn.metrics import normalized_mutual_info_score, v_measure_score

    if len(rows_a) != len(rows_b):
        raise ValueError(f"teachers label {len(rows_a)} and {len(rows_b)} utterances; compare the same split")
    high = max(rate_a, rate_b)
    a_all, b_all = [], []
    for a, b in zip(rows_a, rows_b):
        a = np.repeat(a, int(high // rate_a))
        b = np.repeat(b, int(high // rate_b))
        n = min(len(a), len(b))
        a_all.append(a[:n])
        b_all.append(b[:n])
    a, b = np.concatenate(a_all), np.concatenate(b_all)
    return {"nmi": float(normalized_mutual_info_score(a, b)), "v_measure": float(v_measure_score(a, b)),
            "frames": int(len(a))}
