"""The REST API: Open Inference Protocol v2, records/CSV prediction, management routes.

    >>> from portal import Portal
    >>> from portal.api import create_app
    >>> app = create_app(Portal.open())       # serve with uvicorn, or `portal serve`
"""

from __future__ import annotations

from .app import app_from_env, configure_logging, create_app
from .settings import ApiSettings

__all__ = ["ApiSettings", "app_from_env", "configure_logging", "create_app"]
