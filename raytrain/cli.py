"""Shared plumbing for the thin ``jobs/*.py`` entry points: logging set-up and friendly errors."""

from __future__ import annotations

import logging
import sys
from typing import Callable

from raytrain.config import ConfigError

# Errors a user causes (bad path, bad value, mismatched checkpoint): one line, exit code 2.
USER_ERRORS: tuple[type[BaseException], ...] = (ConfigError, FileNotFoundError, ValueError, PermissionError)


def setup_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def run_main(main: Callable[[], int | None]) -> None:
    """Run a job's main; expected user mistakes print ``error: ...`` without a traceback."""
    setup_logging()
    try:
        code = main()
    except USER_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)
