"""A minimal ctypes binding to espeak-ng (the library the `espeakng-loader` wheel ships).

`Synthesizer.speak(text)` returns the waveform at espeak's own rate and the
phonemes with the exact sample at which each starts, from espeak's phoneme
events. One Synthesizer per process: espeak-ng keeps global state.
"""
from __future__ import annotations

import ctypes
from dataclasses import dataclass

import numpy as np

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INIT_PHONEME_EVENTS, _INIT_PHONEME_IPA = 0x1, 0x2
_EVENT_LIST_TERMINATED, _EVENT_PHONEME = 0, 7
_CHARS_UTF8 = 1
_RATE, _PITCH, _RANGE = 1, 3, 4


class _Event(ctypes.Structure):
    """espeak_EVENT from speak_lib.h (x86_64 / aarch64 layout)."""

    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint),
                ("text_position", ctypes.c_int), ("length", ctypes.c_int),
                ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", ctypes.c_char * 8)]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                             ctypes.POINTER(_Event))


@dataclass
class Speech:
    wav: np.ndarray  # (samples,) float32 at `rate`
    rate: int
    phones: list[tuple[int, str]]  # (start sample, IPA phoneme as espeak names it; "" for a pause)


class Synthesizer:
    def __init__(self):
        import espeakng_loader

        self.lib = ctypes.CDLL(espeakng_loader.get_library_path())
        data = espeakng_loader.get_data_path().encode()
        self.rate = self.lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data,
                                               _INIT_PHONEME_EVENTS | _INIT_PHONEME_IPA)
        if self.rate <= 0:
            raise RuntimeError(f"espeak-ng failed to initialise with data at {data.decode()}")
        self._chunks: list[np.ndarray] = []
        self._phones: list[tuple[int, str]] = []
        self._callback = _CALLBACK(self._receive)  # keep a reference: espeak holds the pointer
        self.lib.espeak_SetSynthCallback(self._callback)

    def _receive(self, wav, count, events) -> int:
        if count > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, (count,)).copy())
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            if events[i].type == _EVENT_PHONEME:
                name = bytes(events[i].id).split(b"\0")[0].decode("utf-8", "replace")
                self._phones.append((events[i].sample, name))
            i += 1
        return 0

    def speak(self, text: str, voice: str, words_per_minute: int, pitch: int, pitch_range: int) -> Speech:
        """Synthesise `text` with espeak voice file id `voice` (e.g. "en+m3")."""
        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise ValueError(f"espeak-ng has no voice {voice!r} (voice names are file ids like 'en', 'fr+f2')")
        for parameter, value in ((_RATE, words_per_minute), (_PITCH, pitch), (_RANGE, pitch_range)):
            self.lib.espeak_SetParameter(parameter, int(value), 0)
        self._chunks, self._phones = [], []
        data = text.encode("utf-8")
        buffer = ctypes.create_string_buffer(data)
        error = self.lib.espeak_Synth(buffer, len(data) + 1, 0, 0, 0, _CHARS_UTF8, None, None)
        self.lib.espeak_Synchronize()
        if error != 0:
            raise RuntimeError(f"espeak-ng could not synthesise {text!r} (error {error})")
        wav = np.concatenate(self._chunks).astype(np.float32) / 32768.0 if self._chunks else np.zeros(0, np.float32)
        return Speech(wav, self.rate, list(self._phones))
