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
        # what holds the event loop (signalling.eventloop): every other callback waits while one of these runs
        self.gc_pause = Histogram(
            "gc_pause_seconds", "Garbage collections of this process and how long each held it", ["generation"],
            registry=r, buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3,
                                 0.5, 1, 2.5),
        )
        self.gc_cpu = Counter("gc_cpu_seconds", "CPU time of this process's thread spent in garbage collections "
                              "(unlike the pauses, without the time the machine gave to other processes meanwhile)",
                              ["generation"], registry=r)
        self.gc_recent_max = Gauge("gc_pause_recent_max_seconds", "Longest collection of the last 10 s",
                                   ["generation"], registry=r)
        self.loop_lag = Histogram(
            "event_loop_lag_seconds", "How late a 100 ms ticker on the event loop woke up", registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1, 2.5, 5),
        )
        self.loop_lag_recent_max = Gauge("event_loop_lag_recent_max_seconds", "Largest event-loop lag of the last 10 s",
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
