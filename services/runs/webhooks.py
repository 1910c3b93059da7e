"""Webhook deliveries: rows written with a run's terminal state, sent here with retries.

Body `{run_id, job_id, project_id, status, attempt, result?, error?, timestamp}`; when the job has a
webhook_secret, `X-Strait-Timestamp: <unix seconds>` and
`X-Strait-Signature: v1=<hex HMAC-SHA256(secret, timestamp + "." + body)>`. A 2xx answer delivers; anything
else is retried with exponential backoff (1 s·2^(n-1), capped at 1 h) up to MAX_ATTEMPTS."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
from datetime import timedelta

import httpx

from services.common.clock import Clock
from services.common.secrets import SecretBox, SecretKeyError, secret_box

from . import domain
from .store import RunStore, WebhookDeliveryRow

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 8
LEASE = timedelta(seconds=60)
TIMEOUT_SECS = 10.0


def signature(secret: str, timestamp: str, body: str) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.{body}".encode(), hashlib.sha256).hexdigest()
    return f"v1={digest}"


def retry_delay(attempts: int) -> timedelta:
    return timedelta(seconds=min(2 ** max(attempts - 1, 0), 3600))


class WebhookSender:
    def __init__(self, store: RunStore, clock: Clock, client: httpx.AsyncClient | None = None,
                 box: SecretBox | None = None) -> None:
        self.store = store
        self.clock = clock
        self.box = box or secret_box()
        self.client = client or httpx.AsyncClient(timeout=TIMEOUT_SECS)

    async def run(self, interval: float = 0.5) -> None:
        while True:
            try:
                while await self.send_due():
                    pass
            except Exception:
                log.exception("webhook delivery failed")
            await asyncio.sleep(interval)

    async def send_due(self, limit: int = 100) -> int:
        """Sends every due delivery (concurrently); answers how many it tried."""
        due = await self.store.take_due_deliveries(self.clock.now(), LEASE, limit)
        await asyncio.gather(*(self._send(row, snapshot) for row, snapshot in due))
        return len(due)

    async def _send(self, row: WebhookDeliveryRow, snapshot: bytes | None) -> None:
        status, error = None, ""
        try:
            secret = domain.snapshot_webhook_secret(snapshot, self.box) if snapshot else ""
        except SecretKeyError as exc:  # never sent unsigned: retried, in case the key is put back
            log.error("webhook delivery %s: cannot open the job's webhook secret: %s", row.id, exc)
            secret, error = "", f"cannot open the webhook secret: {exc}"
        timestamp = str(int(self.clock.now().timestamp()))
        headers = {"Content-Type": "application/json", "User-Agent": "jobline-webhooks"}
        if secret:
            headers["X-Strait-Timestamp"] = timestamp
            headers["X-Strait-Signature"] = signature(secret, timestamp, row.body)
        if not error:
            try:
                response = await self.client.post(row.url, content=row.body.encode(), headers=headers)
                status = response.status_code
                if not response.is_success:
                    error = f"answered {status}"
            except httpx.HTTPError as exc:
                error = f"{exc.__class__.__name__}: {exc}"
        attempts = row.attempts + 1
        now = self.clock.now()
        if not error:
            await self.store.finish_delivery(row.id, state="delivered", attempts=attempts, last_status=status,
                                             last_error="", delivered_at=now)
        elif attempts >= MAX_ATTEMPTS:
            await self.store.finish_delivery(row.id, state="failed", attempts=attempts, last_status=status,
                                             last_error=error)
        else:
            await self.store.finish_delivery(row.id, attempts=attempts, last_status=status, last_error=error,
                                             next_attempt_at=now + retry_delay(attempts))

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.client.aclose()
