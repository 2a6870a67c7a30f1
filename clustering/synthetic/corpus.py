"""The built-in corpus: varied synthetic speech in several languages, with exact phone alignments.

`make_corpus(out_dir)` writes:
  wav/<lang>/<lang>_<index>.wav    16 kHz mono PCM-16
  train.tsv, valid.tsv              fairseq manifests (and their arrays, SPLIT.tsv.arrays)
  train.phn.tsv, valid.phn.tsv      100 Hz frame-level phones, `uid<TAB>p1,p2,...`, manifest order
  transcripts.tsv                   `uid<TAB>text`
  speakers.tsv                      `uid<TAB>speaker`: the espeak voice (language + variant)
  summary.json, summary.md          hours, utterances and phone inventory per language
Same seed, same bytes (apart from the absolute root on the manifests' first line).
"""
from __future__ import annotations

import json
import re
import multiprocessing
import multiprocessing.connection
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..audio import ALIGNMENT_RATE, SAMPLE_RATE, resample
from ..manifest import check_valid_percent, ensure_valid, write_manifest
from ..manifest_arrays import write_manifest_arrays
from ..path_checks import output_folder
from .phrases import WORDS

LANGUAGES = ("en", "de", "fr", "es", "it")
# espeak voice variants whose output is reproducible; the "breath" variants (f2, f3, f5) add
# noise from a generator that cannot be seeded, so they would break "same seed, same bytes".
VARIANTS = ("", "+m1", "+m2", "+m3", "+m4", "+m5", "+m6", "+m7", "+f1", "+f4", "+klatt", "+klatt2", "+klatt3")
SILENCE = "sil"
MAX_WPM = 300  # espeak's event positions drift above ~450 words per minute
_STRESS = re.compile("[ˈˌ',]")
RENDER_ROUND = 32  # utterances synthesised per round
AUDIO_FOLDER = "wav"  # out_dir/wav/<lang>/<uid>.wav
TRANSCRIPTS = "transcripts.tsv"
SPEAKERS = "speakers.tsv"  # uid<TAB>espeak voice: the speaker of each utterance, for ABX across speakers


def alignment_file(folder: Path, split: str) -> Path:
    """The 100 Hz phones of `split` in a corpus folder: SPLIT.phn.tsv."""
    return Path(folder) / f"{split}.phn.tsv"


@dataclass(frozen=True)
class UtteranceSpec:
    uid: str  # e.g. "en/en_00012"
    language: str
    voice: str
    words_per_minute: int
    pitch: int
    pitch_range: int
    phrases: tuple[str, ...]
    pauses_ms: tuple[int, ...]  # before the first phrase, between phrases, after the last
    seed: int


def spec_stream(languages: tuple[str, ...], seed: int):
    """Endless utterance specs, languages in turn, fixed by `seed`; ValueError for an unknown language."""
    unknown = [lang for lang in languages if lang not in WORDS]
    if unknown or not languages:
        raise ValueError(f"no word list for {unknown or 'an empty list'}; choose from {', '.join(LANGUAGES)}")
    return _specs(languages, seed)


def _specs(languages: tuple[str, ...], seed: int):
    rng = np.random.default_rng(seed)
    index = 0
    while True:
        language = languages[index % len(languages)]
        count = int(rng.integers(2, 5))
        phrases = tuple(" ".join(rng.choice(WORDS[language], int(rng.integers(4, 11)))) for _ in range(count))
        yield UtteranceSpec(f"{language}/{language}_{index:05d}", language,
                            language + VARIANTS[int(rng.integers(len(VARIANTS)))], int(rng.integers(130, MAX_WPM)),
                            int(rng.integers(30, 71)), int(rng.integers(20, 81)), phrases,
                            tuple(int(v) for v in rng.integers(150, 600, count + 1)), int(rng.integers(2**31)))
        index += 1


def clean_phone(name: str) -> str | None:
    """espeak's phoneme name -> our label: stress removed, pauses 'sil', unknown 'spn';
    None for language-switch markers like '(en)', which are not sounds."""
    if name.startswith("(") and name.endswith(")"):
        return None
    name = _STRESS.sub("", name).strip()
    if not name or name in ("_", "_:", "_!"):
        return SILENCE
    return "spn" if "?" in name else name


def synthesise(spec: UtteranceSpec) -> tuple[np.ndarray, int, list[tuple[int, str]]]:
    """Run espeak for one utterance in a fresh process: (wav at espeak's rate, rate, segments).

    espeak-ng carries hidden state from one synthesis to the next and draws from
    libc's rand(), so each utterance is rendered in a new process (forked from a clean
    fork server, never from one holding torch threads) with rand() seeded from the spec:
    the same spec always gives the same samples.
    """
    import ctypes

    from .espeak import Synthesizer

    ctypes.CDLL(None).srand(spec.seed % 2**31)
    synth = Synthesizer()
    pieces, segments, cursor = [], [], 0  # segments: (start sample at espeak's rate, phone)
    for index, phrase in enumerate(spec.phrases + ("",)):
        silence = np.zeros(int(spec.pauses_ms[index] * synth.rate / 1000), np.float32)
        segments.append((cursor, SILENCE))
        pieces.append(silence)
        cursor += len(silence)
        if not phrase:
            break
        speech = synth.speak(phrase, spec.voice, spec.words_per_minute, spec.pitch, spec.pitch_range)
        segments.append((cursor, SILENCE))
        segments += [(cursor + start, label) for start, name in speech.phones
                     if (label := clean_phone(name)) is not None]
        pieces.append(speech.wav)
        cursor += len(speech.wav)
    return np.concatenate(pieces), synth.rate, segments


def _synthesise_to(spec: UtteranceSpec, connection) -> None:
    connection.send(synthesise(spec))
    connection.close()


def _synthesise_all(specs: list[UtteranceSpec], jobs: int) -> list:
    """`synthesise` each spec in its own short-lived process, `jobs` at a time, in order."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["clustering.synthetic.corpus", "clustering.synthetic.espeak"])  # children start warm
    results, pending, running = [None] * len(specs), list(enumerate(specs)), {}
    while pending or running:
        while pending and len(running) < max(1, jobs):
            index, spec = pending.pop(0)
            receive, send = context.Pipe(duplex=False)
            process = context.Process(target=_synthesise_to, args=(spec, send), daemon=True)
            process.start()
            send.close()
            running[receive] = (index, process)
        for receive in multiprocessing.connection.wait(list(running)):
            index, process = running.pop(receive)
            try:
                results[index] = receive.recv()
            except EOFError:
                raise RuntimeError(f"the synthesis process for utterance {specs[index].uid} died; if make_corpus "
                                   "is called from a script, put the call under `if __name__ == '__main__':` "
                                   "(worker processes import the script)") from None
            finally:
                receive.close()
                process.join()
    return results


def finish(spec: UtteranceSpec, raw: np.ndarray, rate: int, segments) -> tuple[np.ndarray, list[str]]:
    """Resample to 16 kHz, set a random level, add a little noise; 100 Hz phone labels."""
    rng = np.random.default_rng(spec.seed)
    wav = resample(raw, rate)
    wav = wav * rng.uniform(0.5, 0.9) / max(1e-3, np.abs(wav).max())
    wav = (wav + rng.normal(0, 10 ** rng.uniform(-3.5, -2.5), len(wav))).astype(np.float32)
    return wav, frame_labels(segments, rate, len(wav))


def frame_labels(segments: list[tuple[int, str]], rate: int, num_samples: int) -> list[str]:
    """Phone of each 10 ms frame (at its centre) from (start sample at `rate`, phone) segments."""
    starts = np.array([s for s, _ in segments], dtype=np.float64) * SAMPLE_RATE / rate
    hop = SAMPLE_RATE // ALIGNMENT_RATE
    centres = np.arange(num_samples // hop) * hop + hop / 2
    which = np.searchsorted(starts, centres, side="right") - 1
    return [segments[max(0, i)][1] for i in which]


def check_corpus_settings(hours: float, languages: tuple[str, ...], valid_percent: float) -> None:
    """ValueError naming the setting for hours, languages or valid_percent that cannot make a corpus."""
    problem = hours_problem(hours)
    if problem:
        raise ValueError(f"--hours {problem}")
    check_valid_percent(valid_percent)
    spec_stream(tuple(languages), 0)


def make_corpus(out_dir: str | Path, hours: float = 0.5, languages: tuple[str, ...] = ("en", "de", "fr"),
                seed: int = 0, valid_percent: float = 0.05, jobs: int = 2) -> dict:
    """Synthesise the corpus into `out_dir`; returns the summary (also in summary.json).

    With `valid_percent` > 0 and two utterances or more, valid gets at least one. Each round of
    utterances is written as soon as it is rendered, so memory stays that of one round (plus
    about 1 MB of alignment text per hour); a bar shows the audio made so far.
    """
    check_corpus_settings(hours, languages, valid_percent)
    stream = spec_stream(tuple(languages), seed)
    out = output_folder(out_dir)  # only once every setting is known to be good
    rng = np.random.default_rng(seed + 1)
    made, summary, seconds = [], {}, 0.0  # made: (spec, samples, alignment line, drawn for valid)
    bar = tqdm(total=round(hours * 3600), desc="synthesise", unit="s audio", mininterval=2)
    while seconds < hours * 3600:  # render in rounds until the audio adds up to `hours`
        round_specs = [next(stream) for _ in range(RENDER_ROUND)]
        for spec, raw in zip(round_specs, _synthesise_all(round_specs, jobs)):
            if seconds >= hours * 3600:
                break
            wav, phones = finish(spec, *raw)
            _write_wav(out / AUDIO_FOLDER / f"{spec.uid}.wav", wav)
            made.append((spec, len(wav), f"{spec.uid}\t{','.join(phones)}\n", rng.random() < valid_percent))
            _count(summary, spec.language, len(wav), phones)
            seconds += len(wav) / SAMPLE_RATE
            bar.update(round(seconds) - bar.n)
    bar.close()
    in_valid = ensure_valid([drawn for *_, drawn in made], valid_percent, seed + 1)
    for split, wanted in (("train", False), ("valid", True)):
        chosen = [item for item, valid in zip(made, in_valid) if valid == wanted]
        write_manifest(out / f"{split}.tsv", out / AUDIO_FOLDER, [(f"{spec.uid}.wav", n) for spec, n, *_ in chosen])
        write_manifest_arrays(out / f"{split}.tsv")
        alignment_file(out, split).write_text("".join(line for _, _, line, _ in chosen))
    (out / TRANSCRIPTS).write_text("".join(f"{s.uid}\t{' | '.join(s.phrases)}\n" for s, *_ in made))
    (out / SPEAKERS).write_text("".join(f"{s.uid}\t{s.voice}\n" for s, *_ in made))
    return _write_summary(out, summary)


# The built-in corpus is for demos and experiments at laptop or one-GPU scale (reproduce-gpu uses 5 h).
# The cap keeps a typo (1e9) from rendering for days: 100 h is 11 GB of 16-bit audio and hours of
# synthesis (speed in benchmarks/RESULTS.md); beyond it, real speech serves better.
MAX_HOURS = 100.0


def hours_problem(hours: float) -> str:
    """What is wrong with `hours` of built-in corpus ("" when nothing), for a message naming the setting."""
    if not hours > 0:
        return f"must be positive, got {hours:g}; e.g. 0.5 for half an hour of speech"
    if hours > MAX_HOURS:
        return (f"{hours:g} is above the built-in corpus's cap of {MAX_HOURS:g} h (synthesis for demos and "
                "small experiments: 100 h already takes hours to render and 11 GB of disk); use real "
                "speech for more (audio_dir=, or `hubert manifest`)")
    return ""


def _write_wav(path: Path, wav: np.ndarray) -> None:
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, wav, SAMPLE_RATE, subtype="PCM_16")


def _count(summary: dict, language: str, samples: int, phones: list[str]) -> None:
    """Add one utterance to its language's entry of `summary`."""
    entry = summary.setdefault(language, {"utterances": 0, "hours": 0.0, "phones": set()})
    entry["utterances"] += 1
    entry["hours"] += samples / SAMPLE_RATE / 3600
    entry["phones"].update(phones)


def _write_summary(out: Path, summary: dict) -> dict:
    for entry in summary.values():
        entry["hours"] = round(entry["hours"], 4)
        entry["phones"] = sorted(entry["phones"])
    (out / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    lines = ["# Built-in corpus", "", "| language | utterances | hours | phones |", "| --- | --- | --- | --- |"]
    lines += [f"| {lang} | {e['utterances']} | {e['hours']:.3f} | {len(e['phones'])}: {' '.join(e['phones'])} |"
              for lang, e in summary.items()]
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    return summary
