"""The service's one settings object, read from ``DISTILLGUARD_*`` environment variables.

Every field below is documented in its ``description`` (also shown by
``Settings.model_json_schema()``). Lists of tokens are comma-separated in the environment::

    DISTILLGUARD_MODEL_PATH=model.joblib
    DISTILLGUARD_INGEST_TOKENS=tok-ingest-1,tok-ingest-2
    DISTILLGUARD_READ_TOKENS=tok-read
    DISTILLGUARD_SNAPSHOT_PATH=/var/lib/distillguard

The scoring state takes its part of them as a :class:`StateConfig` (``StateConfig.from_settings``);
every default lives here, in the fields of :class:`Settings`, and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Self

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

MiB = 1024 * 1024


def _split_tokens(value: Any) -> Any:
    """``"a, b,,c"`` -> ``["a", "b", "c"]``; lists pass through."""
    if value is None:
        return []
    if isinstance(value, str):
        return [t.strip() for t in value.split(",") if t.strip()]
    return value


class Settings(BaseSettings):
    """Settings of ``distillguard serve`` (environment prefix ``DISTILLGUARD_``)."""

    model_config = SettingsConfigDict(
        env_prefix="DISTILLGUARD_", extra="ignore", validate_default=True
    )

    model_path: Path = Field(
        description="Trained scorer file (`distillguard train --out ...`). Required.",
    )
    accounts_path: Path | None = Field(
        default=None,
        description=(
            "Optional account table (Parquet: account_id, created_at, ...) passed to the feature "
            "code for account_age_days, as in the offline audit. Unset: that feature is null."
        ),
    )
    host: str = Field(default="127.0.0.1", description="Interface to listen on.")
    port: int = Field(default=8000, ge=0, le=65535, description="TCP port to listen on.")
    ingest_tokens: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        repr=False,
        description=(
            "Bearer tokens granted the `ingest` scope (POST /v1/events); comma-separated. "
            "A token listed in both ingest_tokens and read_tokens has both scopes."
        ),
    )
    read_tokens: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        repr=False,
        description=(
            "Bearer tokens granted the `read` scope (GET /v1/accounts, /v1/campaigns, and "
            "health/metrics when those are not public); comma-separated."
        ),
    )
    review_tokens: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        repr=False,
        description=(
            "Bearer tokens granted the `review` scope (POST /v1/accounts/{id}/verdict: an "
            "analyst's verdict); comma-separated. Reading needs the `read` scope as well."
        ),
    )
    webhook_url: str | None = Field(
        default=None,
        description=(
            "POST a signed JSON notice here (http or https) when an account or a campaign newly "
            "reaches a severity band at or above webhook_min_severity. Unset: no webhook."
        ),
    )
    webhook_secret: str | None = Field(
        default=None,
        repr=False,
        description=(
            "Key of the HMAC-SHA256 signature of each webhook request "
            "(X-Distillguard-Signature: sha256=hex of HMAC(secret, timestamp + '.' + body)). "
            "Required with webhook_url."
        ),
    )
    webhook_min_severity: str = Field(
        default="high",
        pattern="^(critical|high|elevated)$",
        description=(
            "Lowest severity band a webhook notice is sent for: critical, high or elevated "
            "(elevated, score >= 95, holds about 5 % of normal accounts by definition)."
        ),
    )
    webhook_max_attempts: int = Field(
        default=8,
        ge=1,
        le=100,
        description=(
            "Tries per webhook notice (a timeout, a connection error, a 408, 429 or 5xx answer "
            "is retried; another 4xx is not) before it is given up and counted."
        ),
    )
    webhook_backoff_s: float = Field(
        default=1.0,
        gt=0,
        description=(
            "Wait before the first retry of a webhook notice, doubled after each failure (at "
            "most 300 s). Notices wait in a queue of at most 10,000 (past it the oldest is "
            "dropped and counted); delivery never holds up ingest or scoring."
        ),
    )
    auth_disabled: bool = Field(
        default=False,
        description=(
            "Serve without authentication. Required (true) when no token is configured: the "
            "service refuses to start with no tokens unless this is set explicitly."
        ),
    )
    window_hours: float = Field(
        default=24.0,
        gt=0,
        description=(
            "Length of the sliding window of events (event time: the newest event's timestamp "
            "minus this). Features are computed over the window; older events are evicted and "
            "rejected on arrival (reason `stale`); accounts idle past it are forgotten."
        ),
    )
    max_future_skew_s: float = Field(
        default=300.0,
        ge=0,
        description=(
            "Largest lead of an event's timestamp over the server clock, in seconds. An event "
            "further in the future is rejected (line, field `ts`, reason `future`): the window "
            "ends at the newest event, so one far-future timestamp would otherwise expire the "
            "whole window. The window end never passes now + this, also after a restart."
        ),
    )
    rescore_interval_s: float = Field(
        default=2.0,
        gt=0,
        description=(
            "Seconds between rescoring passes. Each pass evicts expired events and recomputes "
            "features and scores for the accounts that received events since the last pass."
        ),
    )
    rescore_max_share: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description=(
            "Largest share of the time spent in rescoring passes: after a pass of d seconds the "
            "next starts max(rescore_interval_s, d / rescore_max_share) seconds after its start. "
            "Under heavy ingest a pass costs more (more accounts touched, a bigger window); "
            "spacing passes out leaves ingest the cores, and an event then waits about "
            "1 + 1 / (2 * share) pass durations for its score. 1: back to back when slow."
        ),
    )
    campaigns: bool = Field(
        default=True,
        description=(
            "Detect campaigns (groups of linked accounts) live: a campaign pass rescores the "
            "whole window and runs the offline campaign detection on it, lifting members of "
            "suspicious campaigns as the offline audit does. False: account scores only."
        ),
    )
    campaign_interval_s: float = Field(
        default=30.0,
        gt=0,
        description=(
            "Seconds between campaign passes (a pass runs only when the window changed since "
            "the last one). Its cost grows with the window (features of every account plus "
            "linkage: about 2 s for 400k events on 2 cores) and delays that rescoring pass."
        ),
    )
    campaign_every_passes: int = Field(
        default=0,
        ge=0,
        description=(
            "Also run a campaign pass every this many rescoring passes, whichever comes first "
            "with campaign_interval_s; 0: by time only."
        ),
    )
    snapshot_path: Path | None = Field(
        default=None,
        description=(
            "Directory for durable state: the write-ahead log (`wal/`), Parquet snapshots "
            "(`snap-*/`, `CURRENT`) and the analysts' verdicts (`verdicts.jsonl`). Unset: state "
            "lives in memory only and is lost at exit."
        ),
    )
    snapshot_interval_s: float = Field(
        default=60.0,
        gt=0,
        description=(
            "Seconds between snapshots (one is also written at shutdown). A snapshot lets the "
            "write-ahead log before it be deleted and bounds the replay at start-up. The log "
            "holds accepted events as sent, raw prompt text included, so this also bounds how "
            "long raw text stays on disk."
        ),
    )
    max_body_bytes: int = Field(
        default=16 * MiB,
        gt=0,
        description="Largest accepted POST /v1/events body in bytes; larger bodies get 413.",
    )
    max_events_per_request: int = Field(
        default=10_000,
        gt=0,
        description="Most events (lines) in one POST /v1/events; more get 413.",
    )
    max_accounts: int = Field(
        default=1_000_000,
        gt=0,
        description=(
            "Hard cap on tracked accounts, held at ingest: an ingest that takes the count past "
            "it drops the accounts seen least recently (down to 99 % of the cap, so that the "
            "scan runs once per 1 % of churn; counted in distillguard_accounts_dropped_total); "
            "their events leave the window at the next pass."
        ),
    )
    max_window_events: int = Field(
        default=5_000_000,
        gt=0,
        description=(
            "Hard cap on events held in the window (about 250 bytes each). Past it, the oldest "
            "events are evicted early (distillguard_window_events_evicted_total{reason=cap})."
        ),
    )
    max_queued_events: int = Field(
        default=200_000,
        gt=0,
        description=(
            "Acknowledged events waiting to be fingerprinted into the window past which an "
            "ingest request fingerprints the queue itself (the background loop lags behind). "
            "Bounds the raw prompt text held in memory."
        ),
    )
    max_rejected_listed: int = Field(
        default=100,
        ge=0,
        le=10_000,
        description=(
            "Most problems listed in one POST /v1/events answer (`rejected`); the answer counts "
            "the rest (`rejected_not_listed`). Values echoed in reasons are cut to 120 "
            "characters, so an answer stays small whatever the body."
        ),
    )
    max_bodies_in_flight: int = Field(
        default=4,
        ge=1,
        le=256,
        description=(
            "POST /v1/events bodies being read or held in memory at once (a semaphore taken "
            "before the first byte is read and released with the answer); later requests wait "
            "their turn unread. Bounds ingest memory to about this times max_body_bytes, "
            "plus the decoded batches of ingest_workers."
        ),
    )
    ingest_workers: int = Field(
        default=2,
        ge=1,
        le=64,
        description=(
            "POST /v1/events bodies processed at once (decoding, validation and the "
            "write-ahead log run in worker threads; others wait their turn; fingerprinting runs "
            "later, in the background). A valid body is decoded by pyarrow without the GIL; "
            "the rest of the request path holds it, so more than about 2 rarely adds throughput "
            "and costs read latency."
        ),
    )
    metrics_public: bool = Field(
        default=False,
        description=(
            "Serve /metrics without a token. False (default): the `read` scope is required "
            "(the top-N metric names the most suspicious accounts); Prometheus sends the token "
            "(its `authorization` scrape setting)."
        ),
    )
    docs_public: bool = Field(
        default=False,
        description=(
            "Serve the OpenAPI schema (/openapi.json) and its pages (/docs, /redoc) without a "
            "token. False (default): the `read` scope is required (a browser cannot send it: "
            "fetch /openapi.json with the token, or set this to browse /docs)."
        ),
    )
    health_public: bool = Field(
        default=True,
        description="Serve /healthz and /readyz without a token (false: `read` scope required).",
    )
    top_n: int = Field(
        default=20,
        ge=0,
        le=200,
        description=(
            "Accounts exposed by the top-N metric (distillguard_top_account_score, label "
            "account_id): the only metric labelled by account, so N is bounded. At most N "
            "series at a time; a new series starts only when an account enters the top N."
        ),
    )
    log_level: str = Field(default="info", description="Uvicorn log level.")
    otlp_account_attributes: Annotated[list[str], NoDecode] = Field(
        default=["distillguard.account_id", "tenant.id", "user.id"],
        min_length=1,
        description=(
            "POST /v1/traces: span or resource attributes naming a GenAI span's account, the "
            "first present wins (the span's attributes first, then its resource's); "
            "comma-separated. A span with none of them is rejected."
        ),
    )
    otlp_api_key_attributes: Annotated[list[str], NoDecode] = Field(
        default=["distillguard.api_key_id"],
        description="POST /v1/traces: attributes naming the API key (none present: `unknown`).",
    )
    otlp_ip_attributes: Annotated[list[str], NoDecode] = Field(
        default=["client.address", "http.client_ip"],
        description="POST /v1/traces: attributes naming the client IP (none present: `unknown`).",
    )
    otlp_user_agent_attributes: Annotated[list[str], NoDecode] = Field(
        default=["user_agent.original", "http.user_agent"],
        description="POST /v1/traces: attributes naming the user agent (none present: `unknown`).",
    )
    otlp_end_user_attributes: Annotated[list[str], NoDecode] = Field(
        default=["enduser.id", "enduser.pseudo.id"],
        description="POST /v1/traces: attributes naming the end user (none present: null).",
    )

    @field_validator(
        "ingest_tokens",
        "read_tokens",
        "review_tokens",
        "otlp_account_attributes",
        "otlp_api_key_attributes",
        "otlp_ip_attributes",
        "otlp_user_agent_attributes",
        "otlp_end_user_attributes",
        mode="before",
    )
    @classmethod
    def _tokens(cls, value: Any) -> Any:
        return _split_tokens(value)

    @model_validator(mode="after")
    def _auth_configured(self) -> Self:
        if not self.auth_disabled and not (self.ingest_tokens or self.read_tokens):
            raise ValueError(
                "no API tokens configured: set DISTILLGUARD_INGEST_TOKENS and/or "
                "DISTILLGUARD_READ_TOKENS, or DISTILLGUARD_AUTH_DISABLED=true to serve without "
                "authentication"
            )
        if self.webhook_url is not None:
            if not self.webhook_url.startswith(("http://", "https://")):
                raise ValueError(f"webhook_url {self.webhook_url!r}: use an http(s) URL")
            if not self.webhook_secret:
                raise ValueError(
                    "webhook_url needs DISTILLGUARD_WEBHOOK_SECRET: its requests are signed "
                    "with it, so that the receiver can tell them from forgeries"
                )
        return self

    def token_scopes(self) -> dict[str, frozenset[str]]:
        """Token -> the scopes it grants."""
        scopes: dict[str, set[str]] = {}
        for tok in self.ingest_tokens:
            scopes.setdefault(tok, set()).add("ingest")
        for tok in self.read_tokens:
            scopes.setdefault(tok, set()).add("read")
        for tok in self.review_tokens:
            scopes.setdefault(tok, set()).add("review")
        return {t: frozenset(s) for t, s in scopes.items()}


@dataclass(frozen=True)
class StateConfig:
    """What the scoring state (:class:`service.state.ScoringState`) reads of the settings.

    No defaults here: build it with :meth:`from_settings` (the service), or :meth:`defaults`
    (Settings' own defaults, for tools and tests that have no Settings)."""

    window: timedelta  # window_hours
    future_skew: timedelta  # max_future_skew_s
    max_accounts: int
    max_window_events: int
    max_queued_events: int
    top_n: int
    campaigns: bool
    campaign_interval_s: float
    campaign_every_passes: int

    @classmethod
    def from_settings(cls, settings: Settings) -> StateConfig:
        return cls(
            window=timedelta(hours=settings.window_hours),
            future_skew=timedelta(seconds=settings.max_future_skew_s),
            max_accounts=settings.max_accounts,
            max_window_events=settings.max_window_events,
            max_queued_events=settings.max_queued_events,
            top_n=settings.top_n,
            campaigns=settings.campaigns,
            campaign_interval_s=settings.campaign_interval_s,
            campaign_every_passes=settings.campaign_every_passes,
        )

    @classmethod
    def defaults(cls) -> StateConfig:
        """The defaults of :class:`Settings` (not read from the environment)."""
        return cls.from_settings(Settings.model_construct())
