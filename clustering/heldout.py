"""A second held-out split carved out of valid: one set to choose layers on, one to report on.

Choosing a layer on the utterances its score is reported on flatters it; `split_off_test`
moves a seeded share of `valid.tsv` into `test.tsv` (and of `valid.phn.tsv`, the built-in
corpus's alignments, into `test.phn.tsv`), so nothing is chosen on the reported utterances.
"""
from __future__ import annotations

import random
from pathlib import Path

from .manifest import read_manifest, write_manifest
from .manifest_arrays import write_manifest_arrays
from .synthetic.corpus import alignment_file


def split_off_test(folder: str | Path, share: float, seed: int) -> int:
    """Move `share` (0 < share < 1) of the utterances of `folder/valid.tsv` into `folder/test.tsv`,
    drawn with `seed`; at least one (and at least one left in valid) when valid has two or more.
    Returns the number moved."""
    folder = Path(folder)
    valid = read_manifest(folder / "valid.tsv")
    count = len(valid)
    moved = min(max(round(share * count), 1), count - 1) if count >= 2 else 0
    chosen = set(random.Random(seed).sample(range(count), moved))
    entries = list(zip(valid.paths, valid.sizes))
    write_manifest(folder / "test.tsv", valid.root, [e for i, e in enumerate(entries) if i in chosen])
    write_manifest(folder / "valid.tsv", valid.root, [e for i, e in enumerate(entries) if i not in chosen])
    for split in ("test", "valid"):
        write_manifest_arrays(folder / f"{split}.tsv")
    phones = alignment_file(folder, "valid")
    if phones.exists():
        test_ids = {valid.utterance_id(i) for i in chosen}
        lines = phones.read_text().splitlines(keepends=True)
        alignment_file(folder, "test").write_text("".join(l for l in lines if l.split("\t", 1)[0] in test_ids))
        phones.write_text("".join(l for l in lines if l.split("\t", 1)[0] not in test_ids))
    return moved
