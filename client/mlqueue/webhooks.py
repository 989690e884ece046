"""Checking a webhook's Standard Webhooks signature, for receivers (``pip install mlqueue-client[webhooks]``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mlqueue.errors import MlqueueError


class InvalidSignature(MlqueueError):
    """The webhook's signature or timestamp does not check out: drop the request (answer 400)."""


def verify_webhook(headers: Mapping[str, str], body: bytes | str, secret: str) -> dict[str, Any]:
    """The event ``{"type", "timestamp", "data": <job>}`` if ``webhook-signature`` is right for
    ``body`` (the raw bytes, before any JSON parsing) and ``secret`` (``whsec_...``); else
    ``InvalidSignature``. Timestamps more than 5 minutes off are refused, against replays."""
    try:
        from standardwebhooks.webhooks import Webhook, WebhookVerificationError
    except ImportError as exc:  # an optional extra: the client itself never needs it
        raise MlqueueError("verify_webhook needs the webhooks extra: pip install 'mlqueue-client[webhooks]'") from exc
    lowered = {k.lower(): v for k, v in headers.items()}
    try:
        event = Webhook(secret).verify(body, lowered)
    except WebhookVerificationError as exc:
        raise InvalidSignature(str(exc)) from exc
    return dict(event)
