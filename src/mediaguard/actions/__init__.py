"""Actions taken when an item matches a hash bank: e-mail to reviewers, takedown webhook.

The transports live in :mod:`mediaguard.actions.email` and :mod:`mediaguard.actions.webhook`;
both raise :class:`ActionError`, whose ``transient`` flag tells the caller whether a later retry
can succeed.
"""

from __future__ import annotations

from mediaguard.errors import MediaguardError

__all__ = ["ActionError"]


class ActionError(MediaguardError):
    """An action could not be completed. ``transient``: retrying later may succeed."""

    code = "action_failed"
    status = 502

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message, transient=transient)
