"""Every setting of every process, read from the environment, in one place.

| variable | default | meaning |
|---|---|---|
| JOBLINE_DATA_DIR | ./data | where the embedded SQLite databases live |
| JOBLINE_DATABASE_URL | (unset) | PostgreSQL URL shared by every service (each keeps its own tables) |
| JOBLINE_<SERVICE>_DATABASE_URL | (unset) | a database for one service, overriding the two above |
| JOBLINE_HTTP_HOST / JOBLINE_HTTP_PORT | 0.0.0.0 / 8080 | the gateway's listen address |
| JOBLINE_JOBS_ADDR | 127.0.0.1:50051 | jobs service gRPC address |
| JOBLINE_RUNS_ADDR | 127.0.0.1:50052 | runs service gRPC address (agents connect here) |
| JOBLINE_DEVICES_ADDR | 127.0.0.1:50053 | devices service gRPC address |
| JOBLINE_AUTH_ADDR | 127.0.0.1:50054 | auth service gRPC address |
| JOBLINE_BOOTSTRAP_API_KEY | (random) | the admin API key created on the first start |
| JOBLINE_AUTH_CACHE_SECS | 5 | how long the gateway trusts an authentication result |
| JOBLINE_TRIGGER_RATE_LIMIT_PER_MIN | 10 | `POST /v1/jobs/{id}/trigger` requests per caller (credential) per minute, per gateway; 0 = off |
| JOBLINE_BULK_TRIGGER_RATE_LIMIT_PER_MIN | 30 | `POST /v1/jobs/{id}/trigger/bulk` requests per caller per minute, per gateway; 0 = off |
| JOBLINE_HEARTBEAT_INTERVAL_MS | 5000 | how often agents send heartbeats |
| JOBLINE_HEARTBEAT_TIMEOUT_SECS | 30 | silence after which an executing run is marked crashed |
| JOBLINE_PRESENCE_LEASE_SECS | 10 | a runs replica's presence lease: its devices go offline this long (+~1 s) after it dies |
| JOBLINE_OTEL_EXPORTER | none | tracing exporter: none, console or otlp |
| OTEL_EXPORTER_OTLP_ENDPOINT | (OTel default) | where the otlp exporter sends spans |
| JOBLINE_LOG_LEVEL | INFO | log level of every process |
| JOBLINE_SERVICE_TOKEN | <data dir>/service-token | the credential services present to each other |
| JOBLINE_SECRET_KEY | <data dir>/secret-key | encrypts signing keys and webhook secrets at rest (same on every process) |
| JOBLINE_SECRET_KEY_PREVIOUS | (unset) | retired secret keys, comma-separated: still decrypt, for rotation |

The agent (`jobline agent`) reads JOBLINE_AGENT_CREDENTIAL, JOBLINE_ENROLL_TOKEN and
JOBLINE_RUNS_ADDR (and takes --kill-grace, the seconds from SIGTERM to SIGKILL); the commands it runs get JOBLINE_RUN_ID, JOBLINE_ATTEMPT and one
JOBLINE_INPUT_<NAME> per input. The benchmarks read JOBLINE_BENCH_POSTGRES_URL, the tests
JOBLINE_TEST_POSTGRES_URL.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

SERVICES = ("jobs", "runs", "devices", "auth")
DEFAULT_PORTS = {"jobs": 50051, "runs": 50052, "devices": 50053, "auth": 50054}


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default) or default


def service_addr(service: str) -> str:
    return _env(f"JOBLINE_{service.upper()}_ADDR", f"127.0.0.1:{DEFAULT_PORTS[service]}")


def database_url(service: str) -> str:
    """The service's own database: its own URL, the shared PostgreSQL URL, or a SQLite file."""
    own = os.environ.get(f"JOBLINE_{service.upper()}_DATABASE_URL")
    if own:
        return own
    shared = os.environ.get("JOBLINE_DATABASE_URL")
    if shared:
        return shared
    return f"sqlite:///{data_dir() / f'{service}.db'}"


def data_dir() -> Path:
    path = Path(_env("JOBLINE_DATA_DIR", "data")).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass(frozen=True)
class Settings:
    """What one process needs; built from the environment by `Settings.load()`."""

    service: str
    listen_addr: str
    database_url: str
    peers: dict[str, str] = field(default_factory=dict)
    http_host: str = "0.0.0.0"
    http_port: int = 8080
    bootstrap_api_key: str | None = None
    auth_cache_secs: float = 5.0
    # Surface C's documented per-caller limits (gateway/rate_limit.py); 0 turns one off.
    trigger_rate_limit_per_min: int = 10
    bulk_trigger_rate_limit_per_min: int = 30
    heartbeat_interval_ms: int = 5000
    heartbeat_timeout_secs: float = 30.0
    presence_lease_secs: int = 10
    otel_exporter: str = "none"
    log_level: str = "INFO"

    @classmethod
    def load(cls, service: str) -> "Settings":
        return cls(
            service=service,
            listen_addr=service_addr(service) if service in SERVICES else "",
            database_url=database_url(service) if service in SERVICES else "",
            peers={name: service_addr(name) for name in SERVICES},
            http_host=_env("JOBLINE_HTTP_HOST", "0.0.0.0"),
            http_port=int(_env("JOBLINE_HTTP_PORT", "8080")),
            bootstrap_api_key=os.environ.get("JOBLINE_BOOTSTRAP_API_KEY") or None,
            auth_cache_secs=float(_env("JOBLINE_AUTH_CACHE_SECS", "5")),
            trigger_rate_limit_per_min=int(_env("JOBLINE_TRIGGER_RATE_LIMIT_PER_MIN", "10")),
            bulk_trigger_rate_limit_per_min=int(_env("JOBLINE_BULK_TRIGGER_RATE_LIMIT_PER_MIN", "30")),
            heartbeat_interval_ms=int(_env("JOBLINE_HEARTBEAT_INTERVAL_MS", "5000")),
            heartbeat_timeout_secs=float(_env("JOBLINE_HEARTBEAT_TIMEOUT_SECS", "30")),
            presence_lease_secs=int(_env("JOBLINE_PRESENCE_LEASE_SECS", "10")),
            otel_exporter=_env("JOBLINE_OTEL_EXPORTER", "none").lower(),
            log_level=_env("JOBLINE_LOG_LEVEL", "INFO").upper(),
        )
