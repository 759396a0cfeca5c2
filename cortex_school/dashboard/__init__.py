"""The review dashboard: what waits on a person, in the browser, behind authentication.

``cortex-school dashboard`` serves :func:`create_app` with uvicorn; see
:mod:`cortex_school.dashboard.app` (pages, routes) and :mod:`cortex_school.dashboard.auth`
(token, session cookie, trusted header, CSRF).
"""

from cortex_school.dashboard.app import DashboardConfigError, app_from_settings, create_app

__all__ = ["DashboardConfigError", "app_from_settings", "create_app"]
