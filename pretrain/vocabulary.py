"""CTC vocabularies for exports: the characters of the user's transcripts, as
`Wav2Vec2CTCTokenizer` expects them (blank `<pad>` = 0, `<s>`, `</s>`, `<unk>`, word delimiter `|`)."""
from __future__ import annotations

from pathlib import Path

SPECIAL_TOKENS = ("<pad>", "<s>", "</s>", "<unk>", "|")  # <pad> is the CTC blank
WORD_DELIMITER = "|"


def transcript_characters(path: str | Path) -> list[str]:
    """Sorted characters of the texts in `path` (`uid<TAB>text` per line), spaces as the word
    delimiter; ValueError naming the file and line for a malformed one."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()  # a byte-order mark is dropped
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: transcripts not found (expected `uid<TAB>text` per line)") from None
    except (IsADirectoryError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: not a UTF-8 transcript file ({error})") from None
    characters = set()
    for number, line in enumerate(lines, start=1):
        uid, sep, text = line.partition("\t")
        if not line.strip():
            continue
        if not sep or not uid or not text.strip():
            raise ValueError(f"{path}:{number}: expected 'uid<TAB>text', got {line!r}; fix or remove this line")
        characters.update(" ".join(text.split()))
    characters.discard(" ")
    if not characters:
        raise ValueError(f"{path}: no text; a CTC vocabulary needs transcripts")
    return sorted(characters | {WORD_DELIMITER})


def ctc_vocab(tokens: list[str] | tuple[str, ...]) -> dict[str, int]:
    """token -> id: the special tokens first (blank `<pad>` = 0), then `tokens` in order."""
    if not tokens:
        raise ValueError("a CTC head needs a vocabulary: give transcripts (uid<TAB>text) or a token list")
    vocab = {token: index for index, token in enumerate(SPECIAL_TOKENS)}
    for token in tokens:
        vocab.setdefault(token, len(vocab))
    return vocab
