"""Options of the transcription engine, gathered in small dataclasses (as faster-whisper does)."""

from __future__ import annotations

from dataclasses import dataclass

SAMPLE_RATE = 16000
VAD_WINDOW = 512  # samples at 16 kHz: 32 ms, what Silero expects


@dataclass(frozen=True)
class SegmenterOptions:
    """How a speaker's stream is cut into utterances."""

    threshold: float = 0.5              # speech probability that starts speech
    neg_threshold: float = 0.35         # below this, a window counts as silence
    end_silence_ms: int = 400           # silence that ends an utterance (faster-whisper's file default is 2,000)
    pad_ms: int = 200                   # audio kept before the first and after the last speech window
    min_speech_ms: int = 250            # shorter bursts (clicks, coughs) are not utterances
    max_utterance_s: float = 15.0       # longer speech is cut, at a pause when there is one
    cut_silence_ms: int = 96            # the shortest pause worth cutting at


@dataclass(frozen=True)
class DecodeOptions:
    """How an utterance is decoded, and which results are thrown away as hallucinations."""

    language: str = "en"
    beam_size: int = 1                  # greedy: as accurate as beam 5 on the reference clips, and cheaper
    no_speech_threshold: float = 0.6
    log_prob_threshold: float = -1.0
    compression_ratio_threshold: float = 2.4
    prompt_tokens: int = 32             # the speaker's last committed words, as a short prompt of this many tokens
    prompt_step: int = 8                # a shorter history is cut to a multiple of this (few lengths: they batch)
