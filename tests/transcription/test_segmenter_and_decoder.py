"""The streaming segmenter and the decoder on real speech, silence and noise (the real tiny.en model)."""

from __future__ import annotations

import numpy as np
import pytest

from speech import manifest, pcm16k, wer
from transcription.decoder import Decoder
from transcription.model import ModelSpec, load_model
from transcription.segmenter import Segmenter

SHORT = "ls-test-clean_61-70968-0000.wav"


def cut(audio: np.ndarray, chunk: int = 320) -> list:
    seg = Segmenter()
    out = []
    for i in range(0, len(audio), chunk):
        out += seg.feed(audio[i:i + chunk])
    out += seg.feed(np.zeros(16000, dtype=np.float32))
    return out + seg.flush()


@pytest.fixture(scope="module")
def decoder() -> Decoder:
    return Decoder(load_model(ModelSpec()))


def test_speech_is_cut_at_pauses_as_it_streams() -> None:
    utterances = cut(pcm16k("jfk_inaugural-1961_ask-not.wav"))
    assert len(utterances) >= 3, "the pauses between phrases end utterances"
    assert all(b.start >= a.end for a, b in zip(utterances, utterances[1:]))
    assert utterances[0].start_s < 0.5 and utterances[-1].end_s > 10


def test_the_same_audio_in_any_chunk_size_cuts_the_same() -> None:
    audio = pcm16k(SHORT)
    a = [(u.start, u.end) for u in cut(audio, 320)]
    b = [(u.start, u.end) for u in cut(audio, 1777)]
    assert a == b


def test_long_speech_is_cut_at_the_maximum_length() -> None:
    audio = pcm16k("mfa_acoustic_corpus_spontaneous.wav")
    utterances = cut(audio)
    assert max(u.end_s - u.start_s for u in utterances) <= Segmenter().o.max_utterance_s + 0.1


def test_silence_and_noise_make_no_utterances() -> None:
    rng = np.random.default_rng(7)
    assert cut(np.zeros(16000 * 5, dtype=np.float32)) == []
    noise = (rng.standard_normal(16000 * 5) * 0.05).astype(np.float32)
    assert cut(noise) == []
    hum = (0.2 * np.sin(2 * np.pi * 50 * np.arange(16000 * 5) / 16000)).astype(np.float32)
    assert cut(hum) == []


def test_utterances_decode_close_to_the_reference(decoder: Decoder) -> None:
    refs = manifest()
    for name in (SHORT, "librivox_sense-and-sensibility-ch01_0930.wav"):
        utterances = cut(pcm16k(name))
        text = " ".join(d.text for d in decoder.decode([u.audio for u in utterances], [""] * len(utterances)))
        assert wer(refs[name], text) < 0.2, (name, text)


def test_a_batch_decodes_like_one_by_one(decoder: Decoder) -> None:
    audios = [u.audio for u in cut(pcm16k("jfk_inaugural-1961_ask-not.wav"))]
    batch = [d.text for d in decoder.decode(audios, [""] * len(audios))]
    single = [decoder.decode([a], [""])[0].text for a in audios]
    assert batch == single


def test_a_batch_with_different_prompts_decodes_every_utterance(decoder: Decoder) -> None:
    audios = [u.audio for u in cut(pcm16k("jfk_inaugural-1961_ask-not.wav"))][:3]
    prompts = ["", "and so my fellow Americans", "ask not what your country can do for you"]
    results = decoder.decode(audios, prompts)
    assert len(results) == 3 and all(r.kept and r.text for r in results)


def test_whisper_inventions_on_near_silence_are_dropped(decoder: Decoder) -> None:
    quiet = (np.random.default_rng(3).standard_normal(16000 * 2) * 0.001).astype(np.float32)
    [result] = decoder.decode([quiet], [""])
    assert result.text == "" and not result.kept
