"""Transcription: faster-whisper model loading (bundled tiny.en by default), streaming VAD segmentation, per-speaker transcription, workers."""
