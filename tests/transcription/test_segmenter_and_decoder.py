"""The streaming segmenter and the decoder on real speech, silence and noise (the real tiny.en model)."""

from __future__ import annotations

import numpy as np
import pytest

from speech import manifest, noise, pcm16k, wer
from transcription.decoder import Decoder
from transcription.model import ModelSpec, load_model
from transcription.options import SegmenterOptions
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
    longest = SegmenterOptions().max_utterance_s
    audio = pcm16k("mfa_acoustic_corpus_spontaneous.wav")  # 27 s of talk with only short pauses
    utterances = cut(audio)
    assert len(utterances) > 1 and max(u.end_s - u.start_s for u in utterances) <= longest + 0.1
    assert any(b.start == a.end for a, b in zip(utterances, utterances[1:])), \
        "speech still going at the maximum length is cut, and the next utterance carries on from the cut"


def test_silence_and_noise_make_no_utterances() -> None:
    rng = np.random.default_rng(7)
    assert cut(np.zeros(16000 * 5, dtype=np.float32)) == []
    assert cut((rng.standard_normal(16000 * 5) * 0.05).astype(np.float32)) == []
    assert cut(noise(5)) == []
    hum = (0.2 * np.sin(2 * np.pi * 50 * np.arange(16000 * 5) / 16000)).astype(np.float32)
    assert cut(hum) == []


def test_utterances_decode_close_to_the_reference(decoder: Decoder) -> None:
    refs = manifest()
    for name in (SHORT, "librivox_sense-and-sensibility-ch01_0930.wav"):
        utterances = cut(pcm16k(name))
        text = " ".join(d.text for d in decoder.decode([u.audio for u in utterances], [""] * len(utterances)))
        assert wer(refs[name], text) < 0.2, (name, text)


HISTORIES = [  # what three speakers said before: different lengths, each longer than the prompt
    "we talked about the garden last week and how the roses came back after the frost, which surprised everyone in "
    "the family, my mother most of all, since she had said all winter that they were gone",
    "I have been sleeping badly since the move, waking at four and lying there going over the same worries again "
    "and again until it is light and time to get up for work",
    "my brother called on Sunday for the first time in a year and we spoke for almost an hour about our father and "
    "the house and what happens now that he is gone and the rest of us are left to sort it out",
]


def test_a_batch_decodes_like_one_by_one(decoder: Decoder) -> None:
    audios = [u.audio for u in cut(pcm16k("jfk_inaugural-1961_ask-not.wav"))][:3]
    assert len({len(h.split()) for h in HISTORIES}) == 3, "prompts of different lengths"
    batch = decoder.decode(audios, HISTORIES)
    assert [d.batch for d in batch] == [3, 3, 3], "speakers with some history decode together, in one call"
    single = [decoder.decode([a], [h])[0].text for a, h in zip(audios, HISTORIES)]
    assert [d.text for d in batch] == single and all(single)


def test_a_batch_with_different_prompts_decodes_every_utterance(decoder: Decoder) -> None:
    audios = [u.audio for u in cut(pcm16k("jfk_inaugural-1961_ask-not.wav"))][:3]
    prompts = ["", "and so my fellow Americans", "ask not what your country can do for you"]
    results = decoder.decode(audios, prompts)
    assert len(results) == 3 and all(r.kept and r.text for r in results)


def test_whisper_inventions_on_near_silence_are_dropped(decoder: Decoder) -> None:
    quiet = (np.random.default_rng(3).standard_normal(16000 * 2) * 0.001).astype(np.float32)
    [result] = decoder.decode([quiet], [""])
    assert result.text == "" and not result.kept
