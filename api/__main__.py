"""``python -m api``: the one command that serves the API (make run, compose and tests use it)."""

from __future__ import annotations

import uvicorn

from api.server import server_config
from shared.logging import setup_logging
from shared.settings import get_settings


def main() -> None:
    settings = get_settings()
    setup_logging(settings.log_format, settings.log_level)
    uvicorn.Server(server_config(settings)).run()


if __name__ == "__main__":
    main()
