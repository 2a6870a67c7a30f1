"""Phone-recognition probe: a linear CTC head on frozen features, phone error rate on held-out audio.

The targets are each utterance's phone sequence from its 100 Hz alignment: runs of equal
labels collapsed to one phone, silence ("sil") and unknown phones ("spn") left out (the CTC
blank covers them, as SUPERB's PR task has no silence tokens). The head is one linear layer
from the features, standardised with the train frames' mean and deviation, to the train
phones plus the blank; it is trained with Adam on `probe_steps` batches of `probe_batch`
utterances drawn with the seed, then decoded greedily (best class per frame, repeats merged,
blanks dropped). PER = edit distance (substitutions, deletions, insertions) summed over the
report utterances / their phones summed. A report phone never seen in training counts as an
error wherever it occurs.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .abx_items import phone_runs
from .audio import ALIGNMENT_RATE
from .quality_budget import QualityBudget
from .threads import torch_threads

LEFT_OUT = frozenset({"sil", "spn", ""})


def phone_sequence(frames: list[str]) -> list[str]:
    """The phones of a 100 Hz alignment in order, runs merged, silence and unknowns left out."""
    return [phone for _, _, phone in phone_runs(frames) if phone not in LEFT_OUT]


@dataclass
class ProbeResult:
    per: float
    edits: np.ndarray  # (report utterances,) edit distance of each
    lengths: np.ndarray  # (report utterances,) reference phones of each
    train_utterances: int
    train_frames: int
    phones: int  # phones the head can output (blank not counted)
    final_loss: float


def edit_distance(reference: list[int], hypothesis: list[int]) -> int:
    """Levenshtein distance, one row of the table at a time: the insertion chain of a row is a
    running minimum of (value - position)."""
    hyp = np.asarray(hypothesis, dtype=np.int64)
    positions = np.arange(len(hyp) + 1)
    row = positions.copy()
    for k, token in enumerate(reference, start=1):
        best = np.empty_like(row)
        best[0] = k
        best[1:] = np.minimum(row[1:] + 1, row[:-1] + (hyp != token))
        row = np.minimum.accumulate(best - positions) + positions
    return int(row[-1])


def phone_probe(train: list[np.ndarray], train_frames: list[list[str]], frame_rate: float,
                report: list[np.ndarray], report_frames: list[list[str]], budget: QualityBudget) -> ProbeResult:
    """Train the head on `train` features (frames, dim) at `frame_rate` with their 100 Hz alignments
    `train_frames` (cut into crops of at most `budget.probe_crop_seconds`), score whole `report`
    utterances against theirs."""
    import torch

    crops = [crop for feats, frames in zip(train, train_frames)
             for crop in _crops(feats, frames, frame_rate, budget.probe_crop_seconds)]
    vocabulary = sorted({p for _, seq in crops for p in seq})
    index = {p: k + 1 for k, p in enumerate(vocabulary)}  # 0 is the CTC blank
    frames = np.concatenate(train)
    mean, scale = frames.mean(0), frames.std(0) + 1e-5
    with torch_threads(1):
        torch.manual_seed(budget.seed)
        head = torch.nn.Linear(frames.shape[1], len(vocabulary) + 1)
        loss = _train(head, [((f - mean) / scale, [index[p] for p in seq]) for f, seq in crops], budget)
        edits, lengths = [], []
        with torch.no_grad():
            for feats, aligned in zip(report, report_frames):
                best = head(torch.from_numpy((feats - mean) / scale)).argmax(1).numpy()
                hypothesis = [int(t) for k, t in enumerate(best) if t != 0 and (k == 0 or t != best[k - 1])]
                phones = phone_sequence(aligned)
                edits.append(edit_distance([index.get(p, -1) for p in phones], hypothesis))
                lengths.append(len(phones))
    edits, lengths = np.array(edits), np.array(lengths)
    return ProbeResult(float(edits.sum() / max(1, lengths.sum())), edits, lengths, len(train), len(frames),
                       len(vocabulary), loss)


def _crops(feats: np.ndarray, aligned: list[str], frame_rate: float, seconds: float):
    """(features, phones) of consecutive whole phones of one utterance, each crop at most `seconds`
    long (a longer phone is a crop of its own); crops with no phone are dropped."""
    runs, longest = phone_runs(aligned), seconds * ALIGNMENT_RATE
    start = 0
    while start < len(runs):
        stop = start + 1
        while stop < len(runs) and runs[stop][1] - runs[start][0] <= longest:
            stop += 1
        first = int(runs[start][0] * frame_rate // ALIGNMENT_RATE)
        last = min(len(feats), -(-runs[stop - 1][1] * frame_rate // ALIGNMENT_RATE))
        phones = [p for _, _, p in runs[start:stop] if p not in LEFT_OUT]
        if phones and last > first:
            yield feats[first:int(last)], phones
        start = stop


def _train(head, crops: list[tuple[np.ndarray, list[int]]], budget: QualityBudget) -> float:
    """Adam on CTC for `budget.probe_steps` batches of crops (cosine-decayed learning rate);
    returns the mean loss of the last tenth of the steps."""
    import torch

    rng = np.random.default_rng(budget.seed)
    optimizer = torch.optim.Adam(head.parameters(), lr=budget.probe_lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, budget.probe_steps)
    losses = []
    for _ in range(budget.probe_steps):
        batch = [crops[k] for k in rng.choice(len(crops), min(budget.probe_batch, len(crops)), replace=False)]
        lengths = torch.tensor([len(f) for f, _ in batch])
        feats = torch.zeros(len(batch), int(lengths.max()), batch[0][0].shape[1])
        for row, (f, _) in enumerate(batch):
            feats[row, :len(f)] = torch.from_numpy(f)
        log_probs = head(feats).log_softmax(-1).transpose(0, 1)  # (frames, batch, classes)
        labels = torch.tensor([p for _, seq in batch for p in seq])
        label_lengths = torch.tensor([len(seq) for _, seq in batch])
        loss = torch.nn.functional.ctc_loss(log_probs, labels, lengths, label_lengths, zero_infinity=True)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(loss.detach())
    return float(torch.stack(losses[-max(1, len(losses) // 10):]).mean()) if losses else float("nan")
