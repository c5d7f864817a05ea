"""One typed settings object, read from the environment and an optional TOML file.

Precedence, lowest first: embedded defaults, the settings file (`THERAPY_SETTINGS_FILE` or `--settings`),
environment variables, command-line flags. Every field `name` reads the variable `THERAPY_<NAME>`, except
`database_url` and `redis_url`, which read the conventional `DATABASE_URL` and `REDIS_URL`.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import secrets
import tomllib
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Mapping

from core.errors import ConfigError

Environment = Literal["development", "test", "production"]
_ENVIRONMENTS = ("development", "test", "production")
_UNPREFIXED = {"database_url": "DATABASE_URL", "redis_url": "REDIS_URL"}
#: Secrets that must be given explicitly in production; in development they are generated once and kept in the data folder.
PRODUCTION_SECRETS = ("secret_key", "encryption_keys", "metrics_token", "public_url")


@dataclass(frozen=True)
class Settings:
    """Everything the server can be configured with. Build it with `load_settings`, never read os.environ elsewhere."""

    env: Environment = "development"
    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Path = Path("data")
    public_url: str = ""
    database_url: str = ""
    redis_url: str = ""
    redis_prefix: str = "therapy"
    secret_key: str = ""
    encryption_keys: str = ""
    metrics_token: str = ""
    allowed_origins: tuple[str, ...] = ()
    trusted_proxies: tuple[str, ...] = ()
    #: Upgrade the schema when the server (or `create-admin`) starts; in production it defaults to false (run
    #: `python -m signalling migrate` once per release instead).
    migrate_on_start: bool = True
    db_pool_size: int = 10
    db_max_overflow: int = 5
    log_level: str = "info"
    log_json: bool | None = None

    #: A bearer token's lifetime; a token used when less than half of it is left is extended to a full one again,
    #: but never past `token_max_lifetime_s` from its creation.
    token_ttl_s: int = 7 * 24 * 3600
    token_max_lifetime_s: int = 30 * 24 * 3600
    email_token_ttl_s: int = 48 * 3600
    password_min_length: int = 10
    signin_attempts_per_account: int = 5
    signin_attempts_per_address: int = 20
    signin_window_s: int = 900
    #: Requests that send an e-mail (registration, resending the verification link, asking for a password reset),
    #: per e-mail address and per client address, in one window.
    email_requests_per_account: int = 5
    email_requests_per_address: int = 50
    email_requests_window_s: int = 3600
    max_json_bytes: int = 64 * 1024
    max_picture_bytes: int = 5 * 1024 * 1024
    picture_max_side: int = 1024

    email_backend: Literal["log", "smtp"] = "log"
    email_from: str = "no-reply@therapy.local"
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    smtp_username: str = ""
    smtp_password: str = ""
    smtp_starttls: bool = False
    outbox_poll_s: float = 2.0

    request_ttl_s: int = 600
    offer_ttl_s: int = 120
    sms_throttle_s: int = 600
    requests_per_client: int = 5
    requests_window_s: int = 600
    pool_sweep_interval_s: float = 1.0
    therapist_busy_ttl_s: int = 6 * 3600
    terms_version: str = "2026-01"
    crisis_resources: tuple[str, ...] = (
        "In an emergency call 999 or go to A&E.",
        "Samaritans: call 116 123 (free, any time).",
        "Shout: text SHOUT to 85258.",
        "NHS 111: choose the mental health option.",
    )
    socket_events_per_s: float = 20.0
    socket_event_burst: int = 40

    call_rejoin_grace_s: int = 90
    #: A member who has not joined within this many seconds of the call opening ends it (`no_show`).
    call_join_timeout_s: int = 120
    #: The same for an admin's test call, whose demo client the therapist opens by hand when they are ready.
    call_test_join_timeout_s: int = 1800
    call_sweep_interval_s: float = 2.0
    max_chat_chars: int = 2000
    max_notes_chars: int = 50_000
    max_sdp_bytes: int = 64 * 1024
    stun_urls: tuple[str, ...] = ()
    turn_urls: tuple[str, ...] = ()
    turn_secret: str = ""
    turn_ttl_s: int = 6 * 3600
    ice_relay_only: bool = False
    ice_loopback_only: bool = False
    media_host_addresses: tuple[str, ...] = ()
    demo_client_email_domain: str = "demo.invalid"

    whisper_model: str = ""
    whisper_device: str = "cpu"
    whisper_compute_type: str = "int8"
    whisper_cpu_threads: int = 1
    whisper_beam_size: int = 1
    transcription_workers: int = 1
    transcription_max_batch: int = 8
    transcription_queue_max: int = 200
    transcripts_to_client: bool = False
    #: With recording consent, audio is recorded and (when this is on) transcribed live.
    transcription_enabled: bool = True
    recording_retention_days: int = 30
    media_queue_frames: int = 500
    #: "threads": decode in this process; "redis" (needs REDIS_URL): utterances go to a Redis Stream consumed by
    #: `python -m transcription.worker` processes, and results come back to whichever server process is free;
    #: "auto": "redis" when REDIS_URL is set, else "threads".
    transcription_backend: Literal["auto", "threads", "redis"] = "auto"
    #: On shutdown, how long to wait for queued utterances to be stored; what is left is finished from the recordings
    #: after a restart.
    transcription_shutdown_s: float = 20.0
    #: Most utterances waiting in the Redis Stream (all processes together); more are dropped, counted and logged.
    transcription_stream_max: int = 1000
    #: A worker's (or server process's) pending entries idle this long are taken over by another (it died).
    transcription_claim_idle_ms: int = 10_000

    # ---- billing (billing/): money is integer pence, GBP
    #: Charge quick-connect calls per minute and require `billing_min_request_pence` to ask for a session. Off: calls
    #: are free (wallet, top-ups, earnings and withdrawals still work).
    billing_charge_calls: bool = True
    billing_min_request_pence: int = 1000
    #: The platform's share of each charged minute, in basis points (2500 = 25 %).
    billing_commission_bp: int = 2500
    billing_low_balance_warn_minutes: int = 3
    billing_tick_interval_s: float = 1.0
    billing_topup_min_pence: int = 500
    billing_topup_max_pence: int = 50_000
    #: A top-up may not take the wallet above this.
    billing_wallet_max_pence: int = 200_000
    billing_withdrawal_min_pence: int = 100
    #: Where therapists send the invoice for a withdrawal (named in the e-mail asking for it).
    billing_invoice_email: str = "invoices@therapy.local"
    billing_payout_timezone: str = "Europe/London"
    #: Stripe keys. With none set outside production, `stripe_local_server` runs a marked test mode.
    stripe_secret_key: str = ""
    stripe_publishable_key: str = ""
    stripe_webhook_secret: str = ""
    #: A Stripe-compatible API to use instead of api.stripe.com (localstripe in tests); empty: Stripe itself.
    stripe_api_base: str = ""
    stripe_webhook_tolerance_s: int = 300
    #: Start a local Stripe-compatible server (billing/localstripe_ext.py) for the test mode; unset: in development
    #: when no `stripe_secret_key` is set.
    stripe_local_server: bool | None = None

    socket_ping_interval_s: float = 5.0
    socket_ping_timeout_s: float = 10.0
    shutdown_timeout_s: float = 10.0

    # ---- the event loop (signalling/eventloop.py)
    #: Once the server is serving: one full collection, then `gc.freeze()`, so later full collections no longer walk
    #: the start-up heap (every imported module, the app; ~170,000 objects).
    gc_freeze: bool = True
    #: The garbage collector's thresholds (`gc.set_threshold`) in the server process: a young collection after this
    #: many more allocations than frees of container objects, a middle one every `gen1` young ones, a full one
    #: every `gen2` middle ones (and only when the objects that survived since the last full one are a quarter of
    #: those it kept). A full collection walks every live connection's objects (~0.15 ms of CPU per connection
    #: here), so it comes 100 times less often than Python's default of 10: at the load test's rates, one every 6 to
    #: 50 minutes instead of every 4 to 10 s.
    #: Young and middle ones stay small (a larger `gen0` made each young one cost ~25 ms).
    gc_threshold_gen0: int = 700
    gc_threshold_gen1: int = 10
    gc_threshold_gen2: int = 1000
    #: Diagnosis: run the event loop in asyncio debug mode and log every callback that holds it longer than this
    #: (seconds; 0: off). Debug mode costs CPU: never in production.
    slow_callback_s: float = 0.0
    #: Diagnosis: a watchdog thread logs the event loop's stack (`loop.stall`) whenever the loop has not run for this
    #: long (seconds; 0: off). Cheap enough for a load test.
    stall_stacks_s: float = 0.0

    @property
    def production(self) -> bool:
        return self.env == "production"

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.data_dir.resolve() / 'therapy.db'}"

    @property
    def effective_public_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    @property
    def effective_allowed_origins(self) -> tuple[str, ...]:
        if self.allowed_origins:
            return self.allowed_origins
        return (self.effective_public_url, f"http://127.0.0.1:{self.port}", f"http://localhost:{self.port}")

    def redacted(self) -> dict[str, Any]:
        """The settings as a dict with secrets masked, safe to log."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in ("secret_key", "encryption_keys", "metrics_token", "smtp_password", "turn_secret",
                          "stripe_secret_key", "stripe_webhook_secret") and value:
                value = "***"
            elif f.name in ("database_url", "redis_url") and value:
                value = _mask_url_password(value)
            out[f.name] = str(value) if isinstance(value, Path) else value
        return out


def _mask_url_password(url: str) -> str:
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in creds else url


def env_var_name(field_name: str) -> str:
    """The environment variable that sets `field_name`."""
    return _UNPREFIXED.get(field_name, f"THERAPY_{field_name.upper()}")


def _convert(name: str, raw: Any, annotation: Any) -> Any:
    hints = typing.get_args(annotation)
    origin = typing.get_origin(annotation)
    try:
        if annotation is bool or (origin in (typing.Union, types.UnionType) and bool in hints):
            if raw is None or raw == "":
                return None if type(None) in hints else False
            if isinstance(raw, bool):
                return raw
            lowered = str(raw).strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError("expected true or false")
        if annotation is int:
            return int(raw)
        if annotation is float:
            return float(raw)
        if annotation is Path:
            return Path(str(raw))
        if origin is tuple:
            items = raw if isinstance(raw, (list, tuple)) else str(raw).split(",")
            return tuple(str(item).strip() for item in items if str(item).strip())
        if origin is Literal:
            if raw not in hints:
                raise ValueError(f"expected one of {', '.join(map(str, hints))}")
            return raw
        return str(raw)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"setting {name} ({env_var_name(name)}): {exc}") from None


def load_settings(
    environ: Mapping[str, str] | None = None,
    *,
    settings_file: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build and validate `Settings` from a file, the environment and explicit overrides (highest precedence)."""
    environ = os.environ if environ is None else environ
    type_hints = typing.get_type_hints(Settings)
    values: dict[str, Any] = {}

    path = settings_file or environ.get("THERAPY_SETTINGS_FILE")
    if path:
        try:
            data = tomllib.loads(Path(path).read_text())
        except FileNotFoundError:
            raise ConfigError(f"settings file not found: {path}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"settings file {path} is not valid TOML: {exc}") from None
        known = {f.name for f in dataclasses.fields(Settings)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown settings in {path}: {', '.join(unknown)}")
        values.update(data)

    for f in dataclasses.fields(Settings):
        var = env_var_name(f.name)
        if var in environ:
            values[f.name] = environ[var]
    for key, value in (overrides or {}).items():
        if value is not None:
            values[key] = value

    converted = {name: _convert(name, raw, type_hints[name]) for name, raw in values.items()}
    if converted.get("env") == "production" and "migrate_on_start" not in converted:
        converted["migrate_on_start"] = False  # several processes: the schema is upgraded once, from the CLI
    settings = Settings(**converted)
    _validate(settings)
    return settings


def _validate(s: Settings) -> None:
    if s.env not in _ENVIRONMENTS:
        raise ConfigError(f"THERAPY_ENV must be one of {', '.join(_ENVIRONMENTS)}")
    if not 0 <= s.port <= 65535:
        raise ConfigError("THERAPY_PORT must be between 0 and 65535")
    if "*" in s.allowed_origins:
        raise ConfigError("THERAPY_ALLOWED_ORIGINS must list origins explicitly; '*' is not allowed")
    for proxy in s.trusted_proxies:
        try:
            ipaddress.ip_network(proxy, strict=False)
        except ValueError:
            raise ConfigError(f"THERAPY_TRUSTED_PROXIES: {proxy!r} is not an IP address or network") from None
    if s.offer_ttl_s < 5 or s.request_ttl_s < s.offer_ttl_s:
        raise ConfigError("THERAPY_OFFER_TTL_S must be at least 5 and at most THERAPY_REQUEST_TTL_S")
    if s.ice_relay_only and not (s.turn_urls and s.turn_secret):
        raise ConfigError("THERAPY_ICE_RELAY_ONLY needs THERAPY_TURN_URLS and THERAPY_TURN_SECRET")
    if min(s.gc_threshold_gen0, s.gc_threshold_gen1, s.gc_threshold_gen2) < 1:
        raise ConfigError("THERAPY_GC_THRESHOLD_GEN0, _GEN1 and _GEN2 must be at least 1 (0 would stop the collector)")
    if s.slow_callback_s < 0 or s.stall_stacks_s < 0:
        raise ConfigError("THERAPY_SLOW_CALLBACK_S and THERAPY_STALL_STACKS_S must be 0 (off) or a number of seconds")
    if s.token_ttl_s < 3600:
        raise ConfigError("THERAPY_TOKEN_TTL_S must be at least 3600 so a token never expires in the middle of a call")
    if s.token_max_lifetime_s < s.token_ttl_s:
        raise ConfigError("THERAPY_TOKEN_MAX_LIFETIME_S must be at least THERAPY_TOKEN_TTL_S")
    if min(s.email_requests_per_account, s.email_requests_per_address, s.email_requests_window_s) < 1:
        raise ConfigError("THERAPY_EMAIL_REQUESTS_PER_ACCOUNT, _PER_ADDRESS and _WINDOW_S must be at least 1")
    if s.production:
        missing = [env_var_name(name) for name in PRODUCTION_SECRETS if not getattr(s, name)]
        if missing:
            raise ConfigError("production mode needs these settings: " + ", ".join(missing))
        if len(s.secret_key) < 32:
            raise ConfigError("THERAPY_SECRET_KEY must be at least 32 characters in production")
        if s.email_backend == "log":
            raise ConfigError("THERAPY_EMAIL_BACKEND=log delivers e-mail to the log only, so no one would get their "
                              "verification or password-reset link: production needs THERAPY_EMAIL_BACKEND=smtp "
                              "and THERAPY_SMTP_HOST")


def with_generated_secrets(s: Settings) -> Settings:
    """Outside production, fill missing secrets from `<data_dir>/secrets.json`, creating it once (mode 0600)."""
    if s.production or (s.secret_key and s.encryption_keys):
        return s
    from core.crypto import Keyring

    path = s.data_dir / "secrets.json"
    stored: dict[str, str] = {}
    if path.exists():
        stored = json.loads(path.read_text())
    if not stored.get("secret_key") or not stored.get("encryption_keys"):
        stored = {"secret_key": secrets.token_urlsafe(48), "encryption_keys": Keyring.generate_spec("dev1")}
        s.data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(stored, fh)
    return dataclasses.replace(
        s,
        secret_key=s.secret_key or stored["secret_key"],
        encryption_keys=s.encryption_keys or stored["encryption_keys"],
    )
