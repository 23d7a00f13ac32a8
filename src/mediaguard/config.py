"""Settings, read once from ``MEDIAGUARD_*`` environment variables."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

NsfwMode = Literal["exact", "fast"]

MIB = 1024 * 1024


class Settings(BaseSettings):
    """Every setting mediaguard reads. Each field is ``MEDIAGUARD_<NAME>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="MEDIAGUARD_", extra="ignore")

    # service
    host: str = Field("127.0.0.1", description="Address `mediaguard serve` listens on.")
    port: int = Field(8080, description="Port `mediaguard serve` listens on.")
    database_url: str = Field(
        "sqlite:///mediaguard.db",
        description="SQLAlchemy URL: a SQLite file by default, "
        "`postgresql+psycopg://user@host/db` in production.",
    )
    forwarded_allow_ips: str = Field(
        "127.0.0.1",
        description="Comma-separated proxy addresses whose X-Forwarded-For/-Proto are trusted "
        "(`*`: any), so rate limits count visitors and cookies know the request was https.",
    )
    log_level: str = Field("INFO", description="Log level of the JSON log lines.")
    log_json: bool = Field(True, description="JSON log lines (false: human-readable console).")

    # auth
    scoring_requires_token: bool = Field(
        False, description="Close scoring and lookups to callers without a token (any role)."
    )

    # scoring
    nsfw_mode: NsfwMode = Field(
        "exact",
        description="`exact` matches the reference scores within 1e-4; `fast` trades up to "
        "0.01 of deviation for several times the throughput.",
    )
    nsfw_batch_size: int = Field(8, ge=1, le=64, description="Largest inference batch.")
    nsfw_batch_wait_ms: float = Field(
        2.0, ge=0, description="How long a batch waits for company before it runs."
    )
    nsfw_threads: int = Field(0, ge=0, description="onnxruntime intra-op threads (0: all cores).")
    decode_threads: int = Field(2, ge=1, description="Threads decoding images for batch work.")

    # media limits
    max_image_bytes: int = Field(40 * MIB, ge=1, description="Largest accepted image, in bytes.")
    max_image_pixels: int = Field(
        100_000_000, ge=1, description="Largest accepted image, in pixels (decompression bombs)."
    )

    # fetching
    fetch_allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated host allowlist for URL fetches (empty: any public host). "
        "`*.example.org` allows subdomains.",
    )
    fetch_allow_loopback: bool = Field(
        False, description="Allow fetches from loopback addresses (for tests only)."
    )
    fetch_connect_timeout: float = Field(5.0, gt=0, description="Connect timeout, seconds.")
    fetch_read_timeout: float = Field(15.0, gt=0, description="Read timeout, seconds.")
    fetch_total_timeout: float = Field(30.0, gt=0, description="Whole-fetch deadline, seconds.")
    fetch_max_redirects: int = Field(5, ge=0, description="Redirects followed per fetch.")
    fetch_user_agent: str = Field(
        "mediaguard/0.1 (content-safety fetcher)",
        description="User-Agent header of URL fetches.",
    )

    # matching
    index_sync_interval: float = Field(
        0.25,
        gt=0,
        le=1.0,
        description="How often each process applies bank changes to its PDQ index, seconds.",
    )

    nsfw_threshold: float = Field(
        0.8,
        ge=0,
        le=1,
        description="NSFW score at or above which an item is labelled `sensitive_image`.",
    )

    # sensitive metadata, search and review
    sensitive_terms_file: str | None = Field(
        None,
        description="File of sensitive terms: one term or phrase per line, `#` comments.",
    )
    sensitive_terms_url: str | None = Field(
        None, description="URL of the sensitive-term list (fetched through the guarded fetcher)."
    )
    terms_refresh_interval: float = Field(
        60.0,
        ge=0,
        description="How often worker processes re-read the term list, seconds; a changed list "
        "re-evaluates every item in the background (0: only `mediaguard terms relabel`).",
    )
    report_rate_limit: int = Field(
        20, ge=1, description="Reports one client (token or address) may file per hour."
    )
    review_lock_seconds: float = Field(
        300.0, gt=0, description="How long a reviewer holds an item before others get it."
    )
    search_max_page_size: int = Field(
        50, ge=1, le=500, description="Largest `page_size` of `GET /v1/search`."
    )

    # upload pipeline
    redis_url: str | None = Field(
        None,
        description="Redis queue for `mediaguard worker` processes on any machine (unset: a "
        "SQLite queue file beside the database, for one machine).",
    )
    queue_path: str | None = Field(
        None,
        description="SQLite queue file when no Redis is set (default: `<database>-queue.db` "
        "beside a SQLite database, else `mediaguard-queue.db`).",
    )
    serve_workers: int | None = Field(
        None,
        ge=0,
        description="Worker threads `mediaguard serve` runs in-process (default: 2 on the SQLite "
        "queue, 0 with Redis, where `mediaguard worker` does the work).",
    )
    queue_poll_interval: float = Field(
        0.05, gt=0, le=5, description="How often an idle worker polls the SQLite queue, seconds."
    )
    lease_seconds: float = Field(
        120.0,
        gt=0,
        description="How long a worker holds an item; an item whose lease expired is re-queued.",
    )
    sweep_interval: float = Field(
        2.0, gt=0, description="How often each worker process sweeps leases and retries, seconds."
    )
    requeue_after: float = Field(
        600.0,
        gt=0,
        description="A queued item not picked up this long (seconds) is enqueued again, in case "
        "its message was lost; sooner whenever the queue is empty.",
    )
    max_attempts: int = Field(
        5, ge=1, le=50, description="Attempts at an item before it is `failed`."
    )
    retry_backoff: float = Field(
        2.0, gt=0, description="First retry delay of a transient failure, seconds (doubles)."
    )
    retry_backoff_max: float = Field(600.0, gt=0, description="Longest retry delay, seconds.")

    bank_refresh_interval: float = Field(
        3600.0,
        ge=0,
        description="Worker processes fetch each bank's exchange this often, seconds (0: only "
        "`mediaguard banks fetch`).",
    )

    # actions
    auto_takedown: bool = Field(
        False,
        description="Call the takedown webhook automatically where the bank's category allows "
        "it (never for `terrorism`). Off: takedowns are recorded and e-mailed as "
        '"would take down".',
    )
    notify_recipients: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated e-mail addresses of the trust-and-safety reviewers.",
    )
    notify_from: str = Field("mediaguard@localhost", description="From address of e-mails.")
    smtp_host: str | None = Field(None, description="SMTP server (unset: no e-mail is sent).")
    smtp_port: int = Field(25, ge=1, le=65535, description="SMTP port.")
    smtp_username: str | None = Field(None, description="SMTP login, if the server needs one.")
    smtp_password: str | None = Field(None, description="SMTP password.")
    smtp_security: Literal["none", "starttls", "ssl"] = Field(
        "none", description="`starttls`, `ssl` (implicit TLS) or `none`."
    )
    smtp_timeout: float = Field(10.0, gt=0, description="SMTP timeout, seconds.")
    takedown_webhook_url: str | None = Field(
        None, description="The platform's URL that takes a file down (POST, signed JSON)."
    )
    takedown_webhook_secret: str | None = Field(
        None, description="Shared secret of the webhook's HMAC-SHA256 signature."
    )
    webhook_attempts: int = Field(5, ge=1, le=20, description="Webhook attempts before failing.")
    webhook_backoff: float = Field(
        0.5, ge=0, description="First webhook retry delay, seconds; doubles, with jitter."
    )
    webhook_timeout: float = Field(10.0, gt=0, description="Webhook request timeout, seconds.")

    # exchanges
    ncmec_credentials: str | None = Field(
        None, description="NCMEC hash sharing API credentials, `user:password`."
    )
    stop_ncii_credentials: str | None = Field(
        None, description="StopNCII API keys, `fetch_function_key:subscription_key`."
    )
    tech_against_terrorism_credentials: str | None = Field(
        None, description="Tech Against Terrorism (TCAP) credentials, `user:password`."
    )
    fb_threatexchange_credentials: str | None = Field(
        None, description="Meta ThreatExchange access token, `app_id|secret`."
    )

    @field_validator("fetch_allowed_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip().lower() for part in value.split(",") if part.strip()]
        return value

    @field_validator("notify_recipients", mode="before")
    @classmethod
    def _split_recipients(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment, with explicit overrides (tests, CLI flags) on top."""
    return Settings(**overrides)  # type: ignore[arg-type]
