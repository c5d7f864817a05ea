"""Media: the server's own audio-only WebRTC peer per participant (aiortc), resampling, recording, feeding transcription."""
