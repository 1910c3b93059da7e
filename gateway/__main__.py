"""`python -m gateway`: the REST gateway on JOBLINE_HTTP_HOST:JOBLINE_HTTP_PORT."""

from __future__ import annotations

import uvicorn

from services.common import eventloop, telemetry
from services.common.config import Settings

from .app import create_app


def main() -> None:
    settings = Settings.load("gateway")
    telemetry.setup_logging("gateway", settings.log_level)
    telemetry.setup("gateway", settings.otel_exporter)
    uvicorn.run(
        create_app(settings),
        host=settings.http_host,
        port=settings.http_port,
        loop=eventloop.uvicorn_loop(),
        http="auto",  # httptools (a dependency), else h11
        lifespan="on",
        log_config=None,  # keep the process's own log format
        access_log=False,  # a URL may carry ?access_token= (SSE): never log it
        log_level=settings.log_level.lower(),
    )


if __name__ == "__main__":
    main()
