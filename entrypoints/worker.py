"""What each worker process of `idgate serve --workers N` runs.

uvicorn starts every worker as a fresh interpreter and asks it for the app by import string, so the
worker learns its configuration the way `idgate` itself does: from IDGATE_CONFIG (set by the parent
when `--config` was given), the IDGATE_* variables, and IDGATE_LOG_LEVEL for `--log-level`.
"""

from __future__ import annotations

import os

from litestar import Litestar

from .http import create_app
from .logs import configure_logging
from .settings import load_settings

APP = f"{__name__}:app"


def app() -> Litestar:
    configure_logging(os.environ.get("IDGATE_LOG_LEVEL", "info"))
    return create_app(load_settings())
