"""Every kind of bad audio gets its documented outcome; good audio comes out 16 kHz mono float32."""
import numpy as np
import pytest
import soundfile as sf

from clustering.audio import (MFCC_FRAMES, MFCC_WINDOW, MIN_AUDIO_SAMPLES, SAMPLE_RATE, AudioError, label_indices,
                              load_audio, num_model_frames, short_audio_reason)


def tone(seconds, rate, freq=440.0):
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_frame_arithmetic_is_what_the_model_and_the_mfcc_really_make():
    import torch

    from clustering.features import mfcc_features
    from pretrain.model import HubertEncoder
    from pretrain.presets import model_preset

    encoder = HubertEncoder(model_preset("tiny")).eval()
    for samples in (400, 719, 720, 16000, 37_123):
        with torch.no_grad():
            frames = encoder(torch.zeros(1, samples)).last_hidden.shape[1]
        assert num_model_frames(samples) == frames
        assert num_model_frames(samples, MFCC_FRAMES) == len(mfcc_features(np.zeros(samples, np.float32)))
    assert num_model_frames(399) == 0
    # Model frame t predicts every other MFCC label (100 Hz) and every layer label (50 Hz).
    assert label_indices(4, 100).tolist() == [0, 2, 4, 6] and label_indices(4, 50).tolist() == [0, 1, 2, 3]


def test_16k_wav_is_returned_unchanged(tmp_path):
    wav = tone(1.0, 16000)
    sf.write(tmp_path / "a.wav", wav, 16000, subtype="FLOAT")
    out = load_audio(tmp_path / "a.wav")
    assert out.dtype == np.float32 and out.shape == (16000,)
    np.testing.assert_array_equal(out, wav)


def test_8k_wav_is_resampled_to_16k(tmp_path):
    sf.write(tmp_path / "a.wav", tone(1.0, 8000), 8000)
    out = load_audio(tmp_path / "a.wav")
    assert out.shape == (16000,)
    spectrum = np.abs(np.fft.rfft(out))
    assert abs(np.argmax(spectrum) * SAMPLE_RATE / len(out) - 440) < 2  # same pitch after resampling


def test_44k_stereo_ogg_is_mixed_down_and_resampled(tmp_path):
    left, right = tone(0.5, 44100, 440), tone(0.5, 44100, 440)
    sf.write(tmp_path / "a.ogg", np.stack([left, right], axis=1), 44100)
    out = load_audio(tmp_path / "a.ogg")
    assert out.ndim == 1 and abs(len(out) - 8000) <= 2
    assert 0.15 < np.abs(out).max() < 0.45  # mono mix keeps the level, no clipping


@pytest.mark.parametrize("make, message", [
    (lambda p: p.write_bytes(b""), "cannot decode"),
    (lambda p: p.write_bytes(b"RIFF\x00\x01garbage" * 50), "cannot decode"),
    (lambda p: sf.write(p, np.zeros(0, np.float32), 16000), "zero samples"),
    (lambda p: sf.write(p, np.array([0.1, np.nan, 0.2] * 100, np.float32), 16000, subtype="FLOAT"), "NaN/Inf"),
])
def test_bad_files_raise_audio_error_naming_the_file(tmp_path, make, message):
    path = tmp_path / "bad.wav"
    make(path)
    with pytest.raises(AudioError, match=message) as error:
        load_audio(path)
    assert str(path) in str(error.value)


def test_truncated_files_are_rejected(tmp_path):
    for ext in ("wav", "flac"):
        path = tmp_path / f"cut.{ext}"
        sf.write(path, tone(1.0, 16000), 16000)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        with pytest.raises(AudioError, match=str(path)):
            load_audio(path)


def test_minimum_length(tmp_path):
    sf.write(tmp_path / "short.wav", tone(0.1, 16000), 16000)
    with pytest.raises(AudioError, match="shorter than the minimum 3200"):
        load_audio(tmp_path / "short.wav", min_samples=3200)


def test_the_shortest_usable_audio_is_one_25_ms_frame():
    assert MIN_AUDIO_SAMPLES == MFCC_WINDOW == SAMPLE_RATE * 25 // 1000
    assert num_model_frames(MIN_AUDIO_SAMPLES) == 1 and num_model_frames(MIN_AUDIO_SAMPLES - 1) == 0
    assert short_audio_reason(MIN_AUDIO_SAMPLES) == ""
    assert short_audio_reason(100) == "100 samples, shorter than one 25 ms frame (400 samples)"
