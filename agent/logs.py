"""structlog configured once, in `main`: JSON in production, readable console on a terminal."""

from __future__ import annotations

import logging
import sys
from typing import Literal

import structlog


def configure_logging(
    fmt: Literal["auto", "json", "console"] = "auto", level: str = "info"
) -> None:
    """Configure structlog and stdlib logging (paho, uvicorn) to one output on stderr."""
    use_console = fmt == "console" or (fmt == "auto" and sys.stderr.isatty())
    lvl = getattr(logging, level.upper())
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    renderer: structlog.types.Processor = (
        structlog.dev.ConsoleRenderer(colors=False)
        if use_console
        else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.format_exc_info if not use_console else (lambda _l, _m, e: e),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        # not cached: a logger bound once would keep this configuration for ever, and a
        # later configuration (or structlog.testing.capture_logs) would never reach it
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(
        level=max(lvl, logging.INFO), stream=sys.stderr, format="%(name)s %(levelname)s %(message)s"
    )
