"""Telling people: alerts in the store, the webhook (Slack-compatible), and pausing
auto-approval (the circuit breaker's action)."""

from __future__ import annotations

import httpx

from cortex_school.delivery.steps import Deployer
from cortex_school.store.protocol import StateStore


def notify(webhook: str | None, text: str) -> str | None:
    """A plain webhook POST (Slack-compatible); the error, if any, is returned, never raised."""
    if not webhook:
        return None
    try:
        response = httpx.post(webhook, json={"text": text}, timeout=5.0)
        return None if response.status_code < 300 else f"webhook answered {response.status_code}"
    except httpx.HTTPError as exc:
        return f"webhook unreachable: {type(exc).__name__}"


def alert(store: StateStore, d: Deployer, improvement_id: str, text: str, level: str) -> None:
    store.alert(improvement_id, text, level)
    error = notify(d.services.alert_slack_webhook, text)
    if error:
        store.set_fields(improvement_id, {"notify_error": error})


def pause_auto_approval(store: StateStore, why: str) -> None:
    store.set_flag("auto_approve_none", True, reason=why)
