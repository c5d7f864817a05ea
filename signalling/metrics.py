"""Prometheus metrics of one server process, in a registry of its own (so tests can build many apps)."""

from __future__ import annotations

from typing import Any, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric


class TranscriptionLoad:
    """`transcription_compute_per_audio{worker}`: one sample per decoding worker the transcriber knows of (in this
    process, or the `transcription.worker` processes heard from in the last 30 s)."""

    def __init__(self) -> None:
        self.transcriber: Any = None

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "transcription_compute_per_audio",
            "Decode seconds per second of audio over the last minute, per worker (past 1: falling behind)",
            labels=["worker"])
        loads = getattr(self.transcriber, "worker_loads", None)
        for worker, ratio in sorted((loads() if loads is not None else {}).items()):
            family.add_metric([worker], ratio)
        yield family


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
        self.transcription_load = TranscriptionLoad()
        r.register(self.transcription_load)  # type: ignore[arg-type]
        self.transcription_backlog = Gauge("transcription_backlog", "Utterances waiting to be decoded", registry=r)
        self.transcription_unserved = Gauge(
            "transcription_waiting_without_worker",
            "1 while utterances wait in the Redis Stream and no transcription.worker was heard from for 30 s", registry=r)
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
        self.transcription_load.transcriber = transcriber
        self.transcription_backlog.set_function(lambda: transcriber.backlog())
        self.transcription_unserved.set_function(lambda: float(bool(getattr(transcriber, "unserved", False))))
        self.media_peers.set_function(lambda: len(media.peers))
        self.media_dropped.set_function(lambda: sum(
            sum(getattr(p.consumer, "dropped", {}).values()) for p in media.peers.values()))
