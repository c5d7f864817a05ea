"""Decoding utterances with Whisper, several at once when several are waiting, with hallucination guards.

Whisper pads every input to 30 s, so decoding utterances one by one spends most of the time on padding; the
encoder and decoder of CTranslate2 take a batch, which is the lever for throughput. CTranslate2 decodes a batch in one
`generate` call only when every prompt puts <|startoftranscript|> at the same position, so a speaker's prompt is
their last committed words cut to a fixed number of tokens (`DecodeOptions.prompt_tokens`, from the left; a shorter
history is cut to a multiple of `prompt_step`): after a speaker's first sentence or two every prompt has the same
length, and the utterances waiting together decode together. Silence never reaches here
(the VAD cuts it out); what Whisper still makes up is dropped by its no-speech probability, its compression ratio
(repetition) and a list of phrases it is known to invent on near-silence.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from faster_whisper import WhisperModel
from faster_whisper.audio import pad_or_trim
from faster_whisper.tokenizer import Tokenizer
from faster_whisper.transcribe import get_compression_ratio, get_suppressed_tokens

from transcription.options import DecodeOptions

KNOWN_INVENTIONS = {"thank you", "thanks for watching", "thank you for watching", "you", "bye", "so", "okay"}


@dataclass(frozen=True)
class Decoded:
    text: str
    confidence: float
    no_speech_prob: float
    compression_ratio: float
    kept: bool
    why_dropped: str = ""
    #: How many utterances were decoded together with this one (itself included), in one `generate` call.
    batch: int = 1


def _plain(text: str) -> str:
    return re.sub(r"[^a-z ]", "", text.lower()).strip()


class Decoder:
    """Turns 16 kHz float32 utterances into text with one shared model."""

    def __init__(self, model: WhisperModel, options: DecodeOptions | None = None) -> None:
        self.model = model
        self.o = options or DecodeOptions()
        self.tokenizer = Tokenizer(model.hf_tokenizer, model.model.is_multilingual, task="transcribe",
                                   language=self.o.language)
        self.suppress = get_suppressed_tokens(self.tokenizer, [-1])

    def prompt_tokens(self, previous_text: str) -> list[int]:
        """The prompt of an utterance: the last `prompt_tokens` tokens of what the speaker said before (fewer when they
        have said less, cut to a multiple of `prompt_step`, so prompts come in a handful of lengths)."""
        words = previous_text.split()
        previous = self.tokenizer.encode(" " + " ".join(words)) if words else []
        keep = min(self.o.prompt_tokens, len(previous) // self.o.prompt_step * self.o.prompt_step)
        previous = previous[len(previous) - keep:] if keep else []
        return self.model.get_prompt(self.tokenizer, previous, without_timestamps=True)

    def decode(self, audios: Sequence[np.ndarray], previous_texts: Sequence[str]) -> list[Decoded]:
        """Decode a batch (blocking: call from a worker thread), in one `generate` call per prompt length (one call
        when every speaker has said a sentence or two, or nobody has said anything yet)."""
        if not audios:
            return []
        prompts = [self.prompt_tokens(p) for p in previous_texts]
        groups: dict[int, list[int]] = {}
        for i, prompt in enumerate(prompts):
            groups.setdefault(len(prompt), []).append(i)
        out: list[Decoded | None] = [None] * len(audios)
        for members in groups.values():
            features = np.stack([pad_or_trim(self.model.feature_extractor(audios[i])) for i in members])
            results = self.model.model.generate(
                self.model.encode(features), [prompts[i] for i in members], beam_size=self.o.beam_size,
                max_length=self.model.max_length, return_scores=True, return_no_speech_prob=True, suppress_blank=True,
                suppress_tokens=self.suppress,
            )
            for i, result in zip(members, results):
                out[i] = self._judge(result, len(members))
        return [d for d in out if d is not None]

    def _judge(self, result: object, batch: int = 1) -> Decoded:
        tokens = result.sequences_ids[0]  # type: ignore[attr-defined]
        text = self.tokenizer.decode(tokens).strip()
        avg_logprob = result.scores[0] * (len(tokens) ** 1.0) / (len(tokens) + 1)  # type: ignore[attr-defined]
        no_speech = float(result.no_speech_prob)  # type: ignore[attr-defined]
        ratio = get_compression_ratio(text) if text else 0.0
        confidence = round(math.exp(min(0.0, avg_logprob)), 3)
        why = ""
        if not text:
            why = "empty"
        elif no_speech > self.o.no_speech_threshold and avg_logprob < self.o.log_prob_threshold:
            why = "no_speech"
        elif ratio > self.o.compression_ratio_threshold:
            why = "repetition"
        elif _plain(text) in KNOWN_INVENTIONS and (no_speech > 0.3 or confidence < 0.5):
            why = "invention"
        return Decoded(text if not why else "", confidence, no_speech, ratio, not why, why, batch)
