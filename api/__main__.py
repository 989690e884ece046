"""``python -m api``: the one command that serves the API (make run, compose and tests use it)."""

from __future__ import annotations

import uvicorn

from shared.logging import setup_logging
from shared.settings import get_settings


def main() -> None:
    settings = get_settings()
    setup_logging(settings.log_format, settings.log_level)
    uvicorn.run(
        "api.main:app",
        host=settings.api_host,
        port=settings.api_port,
        log_config=None,
        proxy_headers=True,
        access_log=False,
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()
