"""One settings object per process, read from ``MLQUEUE_*`` environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.durations import parse_duration
from shared.model_store import is_remote

REPO_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MLQUEUE_", extra="ignore")

    # redis://host:port/db, or a Sentinel group: sentinel://h1:26379,h2:26379/0?master=NAME
    # (shared.redis_connection; docs/operations.md "More machines and Redis failover").
    redis_url: str = "redis://127.0.0.1:6379/0"
    # Bind addresses: the API's; Flower's and the worker metrics' when theirs are unset.
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    flower_host: str | None = None
    flower_port: int = 5555
    worker_metrics_host: str | None = None
    # The address a worker shows in its presence (/readyz, GET /v1/models); unset, the address of
    # the interface it reaches Redis through, which is what the other machines see.
    advertise_address: str | None = None
    flower_basic_auth: str | None = None  # "user:password[,user2:password2]"
    # The model repository: a folder (``models_dir``, the default) or ``models_url``, a path or an
    # object-store URL (``s3://bucket/prefix``; gs:// and az:// with gcsfs / adlfs installed) that
    # wins when set. S3 credentials come from the standard AWS_* variables; ``s3_endpoint_url`` points
    # at an S3-compatible server (MinIO, Ceph, moto). Workers download artifacts once into
    # ``model_cache_dir``. The listing is cached ``models_refresh_s`` (unset: 1 s for a folder,
    # 10 s for an object store); reload lists again at once.
    models_dir: Path = REPO_ROOT / "models"
    models_url: str | None = None
    s3_endpoint_url: str | None = None
    model_cache_dir: Path = Path.home() / ".cache" / "mlqueue" / "models"
    models_refresh_s: float | None = Field(None, ge=0)

    # Job data lives this long after creation; a tombstone answers 410 for a while after that.
    job_ttl_s: int = Field(86_400, ge=1)
    tombstone_ttl_s: int = Field(7 * 86_400, ge=0)
    idempotency_ttl_s: int = Field(86_400, ge=1)

    max_wait_s: int = Field(60, ge=0, le=300)
    max_body_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    max_image_pixels: int = Field(40_000_000, ge=1)  # refused before decoding (decompression bombs)
    # Pixels being decoded at once across all requests of an API process (~7.5 bytes of memory each
    # while decoding); an image larger than the budget is decoded alone.
    decode_pixel_budget: int = Field(40_000_000, ge=1)

    # Slow and idle clients. The head (request line + headers) must arrive within header_timeout_s
    # of the connection opening (or of a later request's first byte) and fit in max_header_bytes;
    # a body must be read whole within body_read_timeout_s; an idle kept-alive connection is closed
    # after keep_alive_timeout_s.
    header_timeout_s: float = Field(10.0, gt=0)
    max_header_bytes: int = Field(32 * 1024, ge=1024)
    body_read_timeout_s: float = Field(120.0, gt=0)
    keep_alive_timeout_s: int = Field(5, ge=1)
    # Peers whose X-Forwarded-For/-Proto are believed (IPs or CIDRs, comma-separated; "*" for any).
    # Empty: none, so the rate-limit identity is always the TCP peer.
    trusted_proxies: str = ""

    # API keys: "name=<sha256 of the key>:scope|scope,..." (``make api-key`` prints an entry).
    # With none configured, authentication is off (``make run`` says so loudly).
    api_keys: str = ""
    rate_limit: str = "600/minute"  # per API key (per client IP when auth is off)
    batch_rate_limit: str = "30/minute"  # batch submissions, on top of the above
    auth_failure_limit: str = "30/minute"  # failed authentications per client IP, then 429
    # When set, GET /metrics needs "Authorization: Bearer <token>"; unset, /metrics is open.
    metrics_token: str | None = None

    # Redis socket timeouts: a dead Redis must become a 503 quickly, never a hang.
    redis_socket_timeout_s: float = Field(2.0, gt=0)
    # Connections of the API's pool per process; past it a request waits for one, up to the pool timeout.
    redis_max_connections: int = Field(128, ge=4)
    redis_pool_timeout_s: float = Field(10.0, gt=0)

    # Worker. Task threads of one worker process (Celery's ``--concurrency`` of the threads pool):
    # tickets draining model queues and webhook deliveries. Model work runs ``worker_slots`` at a
    # time per queue (``worker.dispatch``); a ticket thread without a slot waits for one.
    worker_concurrency: int = Field(16, ge=1)
    worker_queues: str = "cpu"
    worker_threads: int = Field(0, ge=0)  # BLAS/OpenMP/TF threads; 0 = cores of this machine
    heartbeat_interval_s: float = Field(5.0, gt=0)
    # Celery's limit per task (the threads pool does not enforce it); the sweeper puts back work
    # claimed longer ago than this plus ``recover_after_s``.
    task_time_limit_s: int = Field(120, ge=1)
    # An unacked Celery message (a ticket, a webhook delivery) goes back to its queue after this
    # long, so it must exceed the longest a message stays unacked (a ticket drains for at most
    # ``worker.dispatch.DRAIN_BUDGET_S`` plus its last item), or a second worker takes it too. A
    # dead worker's jobs do not wait for it: the sweeper puts them back in line.
    visibility_timeout_s: int = Field(600, ge=1)
    # Work items (single jobs, batch chunks) one worker process runs at once per model queue: one
    # in a forward pass, one reading its inputs or writing its results. More only adds waiting:
    # an item claimed early is one a later high-priority job cannot overtake.
    worker_slots: int = Field(2, ge=1)
    # The sweeper (``worker.sweeper``): every this often, one model worker puts back in line the
    # work of dead workers (within about 3 x heartbeat_interval_s + 2 x sweep_interval_s of the
    # death; see docs/guarantees.md), and fails a batch whose chunks the API never queued after
    # recover_after_s.
    sweep_interval_s: float = Field(5.0, gt=0)
    recover_after_s: float = Field(30.0, gt=0)
    # A job (or chunk) claimed this many times without finishing (its worker died each time: a
    # poison input) fails with ``poison_job`` instead of being put back. 0: no limit.
    max_deliveries: int = Field(3, ge=0)

    # Scheduling (``shared.scheduler``): a priority step is this many rows of virtual time; high
    # overtakes normal work until it is one step old, low until two.
    priority_step: int = Field(50_000, ge=1)
    # Admission control, per model queue: past this many items waiting (single jobs and batch
    # chunks), or with the oldest waiting longer than this, submissions get 429 (a key over its fair
    # share) or 503 (the queue is full) with Retry-After. 0 disables each bound.
    max_backlog: int = Field(100_000, ge=0)
    max_backlog_age_s: float = Field(900.0, ge=0)
    # Celery task events (Flower's task list): 3 Redis publishes per job from the worker's consumer thread
    task_events: bool = True
    # Prometheus metrics of this worker on http://<worker_metrics_host or api_host>:<port>/metrics;
    # 0 = disabled. Each worker process on one machine needs a port of its own.
    worker_metrics_port: int = Field(0, ge=0, le=65535)

    @property
    def flower_bind(self) -> str:
        return self.flower_host or self.api_host

    @property
    def worker_metrics_bind(self) -> str:
        return self.worker_metrics_host or self.api_host

    # Result cache for deterministic models (0 disables it)
    cache_ttl_s: int = Field(3600, ge=0)

    # Batches
    max_batch_rows: int = Field(100_000, ge=1)
    max_batch_body_bytes: int = Field(128 * 1024 * 1024, ge=1024)
    batch_chunk_rows: int = Field(5_000, ge=1)  # rows per chunk task (each costs a task and a record update)
    batch_chunk_images: int = Field(32, ge=1)

    # Webhooks (Standard Webhooks). The secret has no default outside ``make run``, which generates one.
    webhook_secret: str | None = None  # "whsec_..." (base64 after the prefix)
    webhook_retry_schedule: str = "5s,5m,30m,2h,5h,10h,24h"
    webhook_timeout_s: float = Field(10.0, gt=0)
    webhook_allow_private: bool = False  # local development and tests only

    log_format: str = "console"  # console | json
    log_level: str = "INFO"

    @property
    def models_location(self) -> str:
        return self.models_url or str(self.models_dir)

    @property
    def models_refresh_interval_s(self) -> float:
        if self.models_refresh_s is not None:
            return self.models_refresh_s
        return 10.0 if is_remote(self.models_location) else 1.0

    @field_validator("redis_url")
    @classmethod
    def _redis_url_parses(cls, value: str) -> str:
        from shared.redis_connection import is_sentinel, parse_sentinel_url  # it imports this module

        if is_sentinel(value):
            parse_sentinel_url(value)  # a malformed Sentinel URL stops the start-up with its reason
        return value

    @field_validator("webhook_retry_schedule")
    @classmethod
    def _schedule_parses(cls, value: str) -> str:
        for step in filter(None, (s.strip() for s in value.split(","))):
            parse_duration(step)  # a bad schedule stops the start-up, not the first retry
        return value


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
