"""Run the actions a check planned: takedown webhook, e-mail, review queue; each audited.

Every action is claimed in the database before it runs and finished with its audit row in one
transaction, so it runs at most once per item, bank and action, whichever process gets to it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from mediaguard.actions import ActionError
from mediaguard.actions.email import (
    MatchNotice,
    SmtpConfig,
    Takedown,
    build_match_email,
    send_email,
)
from mediaguard.actions.webhook import WebhookConfig, deliver
from mediaguard.config import Settings
from mediaguard.store.audit import AuditEvent
from mediaguard.store.db import utcnow
from mediaguard.store.items import ActionInfo, ItemInfo, ItemRepository, MatchRecord

log = structlog.get_logger("mediaguard.actions")

# Takedown action status -> what the e-mail says about it.
_TAKEDOWN_STATE: dict[str, Takedown] = {
    "done": "taken_down",
    "would_take_down": "would_take_down",
    "needs_review": "needs_review",
    "failed": "failed",
}
_ORDER = {"takedown": 0, "notify": 1, "review": 2}


@dataclass(frozen=True)
class Outcome:
    status: str
    detail: str | None


class ActionRunner:
    def __init__(
        self,
        settings: Settings,
        items: ItemRepository,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._settings = settings
        self._items = items
        self._sleep = sleep

    def run(
        self,
        item: ItemInfo,
        actions: Sequence[ActionInfo],
        matches: Mapping[int, MatchRecord],
        metadata: Mapping[int, Mapping[str, Any]],
        *,
        actor: str = "system",
    ) -> list[ActionInfo]:
        """Run ``actions`` (new ones from ``ItemRepository.record_check``) and return them as
        they ended. ``matches`` and ``metadata`` are by bank id."""
        takedowns: dict[int, str] = {}
        for action in sorted(actions, key=lambda a: _ORDER.get(a.action, 9)):
            match = matches[action.bank_id]
            if action.action == "review":
                self._record(
                    action, item, match, Outcome("queued", "waiting for a reviewer"), actor
                )
                continue
            if not self._items.claim(action.id):
                continue
            try:
                if action.action == "takedown":
                    outcome = self._takedown(action, item, match)
                    takedowns[action.bank_id] = outcome.status
                else:
                    status = takedowns.get(action.bank_id) or self._takedown_status(action)
                    state = _TAKEDOWN_STATE.get(status or "", "none")
                    outcome = self._notify(item, match, metadata.get(action.bank_id, {}), state)
            except Exception as exc:  # never leave a claimed action running on a surprise
                log.exception("action_crashed", action_id=action.id)
                outcome = Outcome("failed", f"unexpected error: {exc}")
            self._record(action, item, match, outcome, actor)
        ids = [action.id for action in actions]
        return self._items.actions(action_ids=ids, limit=len(ids)) if ids else []

    def _takedown_status(self, action: ActionInfo) -> str | None:
        """How an earlier takedown of the same item and bank ended, if there was one."""
        for other in self._items.actions(item_id=action.item_id):
            if other.bank_id == action.bank_id and other.action == "takedown":
                return other.status
        return None

    def _takedown(self, action: ActionInfo, item: ItemInfo, match: MatchRecord) -> Outcome:
        if action.mode != "automatic":
            return Outcome(action.mode, _MODE_DETAIL[action.mode])
        url = self._settings.takedown_webhook_url
        secret = self._settings.takedown_webhook_secret
        if not url or not secret:
            return Outcome(
                "failed", "no takedown webhook configured (MEDIAGUARD_TAKEDOWN_WEBHOOK_*)"
            )
        config = WebhookConfig(
            url=url,
            secret=secret,
            attempts=self._settings.webhook_attempts,
            backoff=self._settings.webhook_backoff,
            timeout=self._settings.webhook_timeout,
        )
        try:
            result = deliver(
                config,
                takedown_payload(action, item, match),
                delivery_id=f"takedown-{action.id}",
                sleep=self._sleep,
            )
        except ActionError as exc:
            return Outcome("failed", exc.message)
        return Outcome("done", f"HTTP {result.status_code} after {result.attempts} attempt(s)")

    def _notify(
        self,
        item: ItemInfo,
        match: MatchRecord,
        metadata: Mapping[str, Any],
        takedown: Takedown,
    ) -> Outcome:
        settings = self._settings
        if not settings.smtp_host or not settings.notify_recipients:
            return Outcome(
                "skipped", "no SMTP server or recipients configured (MEDIAGUARD_SMTP_HOST)"
            )
        config = SmtpConfig(
            host=settings.smtp_host,
            port=settings.smtp_port,
            username=settings.smtp_username,
            password=settings.smtp_password,
            security=settings.smtp_security,
            timeout=settings.smtp_timeout,
            sender=settings.notify_from,
        )
        notice = MatchNotice(
            item_id=item.platform_id or item.sha256 or str(item.id),
            media_url=item.media_url,
            sha256=item.sha256 or "",
            bank=match.bank_name,
            category=match.category,
            signal_type=match.signal_type,
            distance=match.distance,
            bank_content_id=match.bank_content_id,
            takedown=takedown,
            metadata={str(key): str(value) for key, value in metadata.items()},
        )
        try:
            send_email(config, build_match_email(config, settings.notify_recipients, notice))
        except ActionError as exc:
            return Outcome("failed", exc.message)
        return Outcome("done", f"e-mailed {len(settings.notify_recipients)} recipient(s)")

    def _record(
        self, action: ActionInfo, item: ItemInfo, match: MatchRecord, outcome: Outcome, actor: str
    ) -> None:
        self._items.finish(
            action.id,
            outcome.status,
            outcome.detail,
            AuditEvent(
                actor=actor,
                event=f"action.{action.action}",
                subject_type="item",
                subject_id=str(item.id),
                result=outcome.status,
                reason=f"{match.signal_type} match in bank {match.bank_name} "
                f"({match.category}) at distance {match.distance}",
                details={
                    "action_id": action.id,
                    "mode": action.mode,
                    "bank": match.bank_name,
                    "bank_content_id": match.bank_content_id,
                    "detail": outcome.detail,
                },
            ),
        )
        log.info(
            "action_finished",
            action=action.action,
            mode=action.mode,
            status=outcome.status,
            item_id=item.id,
            bank=match.bank_name,
        )


_MODE_DETAIL = {
    "would_take_down": "automatic takedown is off (MEDIAGUARD_AUTO_TAKEDOWN): not taken down",
    "needs_review": "this category is never taken down automatically: a reviewer decides",
}


def takedown_payload(action: ActionInfo, item: ItemInfo, match: MatchRecord) -> dict[str, Any]:
    """The JSON a platform's takedown webhook receives."""
    return {
        "event": "takedown",
        "delivery_id": f"takedown-{action.id}",
        "item": {
            "id": item.id,
            "platform_id": item.platform_id,
            "media_url": item.media_url,
            "sha256": item.sha256,
            "sha1": item.sha1,
        },
        "match": {
            "bank": match.bank_name,
            "category": match.category,
            "signal_type": match.signal_type,
            "distance": match.distance,
            "bank_content_id": match.bank_content_id,
        },
        "sent_at": utcnow().isoformat(),
    }
