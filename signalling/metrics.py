"""Prometheus metrics of one server process, in a registry of its own (so tests can build many apps)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.http_requests = Counter("http_requests", "HTTP requests served", ["method", "route", "status"], registry=r)
        self.http_seconds = Histogram(
            "http_request_seconds", "HTTP request duration", ["route"], registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.socket_connections = Gauge("socketio_connections", "Open Socket.IO connections in this process", registry=r)
        self.socket_events = Counter("socketio_events", "Socket.IO events handled", ["event", "result"], registry=r)
        self.signins = Counter("signins", "Sign-in attempts", ["result"], registry=r)
        self.outbox_sent = Counter("outbox_messages_sent", "Outbox messages delivered", registry=r)
        self.transcription_load = Gauge(
            "transcription_compute_per_audio", "Decode seconds per second of audio over the last minute (past 1: falling behind)",
            registry=r)
        self.transcription_backlog = Gauge("transcription_backlog", "Utterances waiting to be decoded", registry=r)
        self.media_peers = Gauge("media_audio_peers", "Server audio peers open in this process", registry=r)
        self.media_dropped = Gauge("media_frames_dropped", "Audio frames dropped by sinks that fell behind (open peers)",
                                   registry=r)

    def watch(self, svc: object) -> None:
        """Read live figures from the services whenever /metrics is scraped."""
        transcriber = getattr(svc, "transcriber")
        media = getattr(svc, "media")
        load = getattr(transcriber, "load", None)
        if load is not None:
            self.transcription_load.set_function(lambda: load.ratio)
        self.transcription_backlog.set_function(lambda: transcriber.backlog())
        self.media_peers.set_function(lambda: len(media.peers))
        self.media_dropped.set_function(lambda: sum(
            sum(getattr(p.consumer, "dropped", {}).values()) for p in media.peers.values()))
