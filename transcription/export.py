"""A call's transcript as plain text, WebVTT or JSON, for download."""

from __future__ import annotations

import json
from typing import Any, Sequence

LABELS = {"client": "Client", "therapist": "Therapist"}


def _clock(ms: int, vtt: bool = False) -> str:
    h, rem = divmod(max(0, ms), 3_600_000)
    m, rem = divmod(rem, 60_000)
    s, milli = divmod(rem, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}.{milli:03d}" if vtt else f"{h:02d}:{m:02d}:{s:02d}"


def to_text(segments: Sequence[dict[str, Any]]) -> str:
    return "".join(f"[{_clock(s['start_ms'])}] {LABELS.get(s['speaker'], s['speaker'])}: {s['text']}\n" for s in segments)


def _vtt_text(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("-->", "--&gt;")


def to_vtt(segments: Sequence[dict[str, Any]]) -> str:
    cues = ["WEBVTT", ""]
    for n, s in enumerate(segments, 1):
        end = max(s["end_ms"], s["start_ms"] + 1)
        cues += [str(n), f"{_clock(s['start_ms'], True)} --> {_clock(end, True)}",
                 f"<v {LABELS.get(s['speaker'], s['speaker'])}>{_vtt_text(s['text'])}", ""]
    return "\n".join(cues)


def to_json(call_id: int, segments: Sequence[dict[str, Any]]) -> str:
    keep = ("speaker", "start_ms", "end_ms", "text", "confidence")
    return json.dumps({"call_id": call_id, "segments": [{k: s[k] for k in keep} for s in segments]}, indent=1)


FORMATS = {"txt": ("text/plain", "txt"), "vtt": ("text/vtt", "vtt"), "json": ("application/json", "json")}
