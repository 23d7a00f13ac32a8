"""Matches -> the actions to take, per bank category.

::

    category          default actions      takedown runs automatically when
    child_protection  notify, takedown     MEDIAGUARD_AUTO_TAKEDOWN is on
    ncii              notify, takedown     MEDIAGUARD_AUTO_TAKEDOWN is on
    terrorism         notify, takedown     never: a human decides (queued for review)
    other             review               MEDIAGUARD_AUTO_TAKEDOWN is on

A takedown that may not run automatically is still recorded, and e-mailed as "would take down"
(switch off) or "needs review" (terrorism), so both modes can be exercised end to end.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, get_args

Category = Literal["child_protection", "terrorism", "ncii", "other"]
CATEGORIES: tuple[Category, ...] = get_args(Category)
ActionName = Literal["notify", "takedown", "review"]
ACTION_NAMES: tuple[ActionName, ...] = get_args(ActionName)
TakedownMode = Literal["automatic", "would_take_down", "needs_review"]

DEFAULT_ACTIONS: dict[str, tuple[ActionName, ...]] = {
    "child_protection": ("notify", "takedown"),
    "ncii": ("notify", "takedown"),
    "terrorism": ("notify", "takedown"),
    "other": ("review",),
}
# Categories whose matches always need a human before anything is removed.
HUMAN_ONLY: frozenset[str] = frozenset({"terrorism"})


def bank_actions(category: str, configured: Sequence[str] | None) -> tuple[ActionName, ...]:
    """The bank's own action list, or its category's default."""
    if configured is None:
        return DEFAULT_ACTIONS.get(category, ("review",))
    return tuple(action for action in ACTION_NAMES if action in configured)


def takedown_mode(category: str, *, auto_takedown: bool) -> TakedownMode:
    if category in HUMAN_ONLY:
        return "needs_review"
    return "automatic" if auto_takedown else "would_take_down"


def plan(
    category: str, configured: Sequence[str] | None, *, auto_takedown: bool
) -> list[tuple[ActionName, str]]:
    """(action, mode) pairs for one match of one bank, in the order they run.

    The takedown runs before the e-mail so the e-mail can tell its outcome. A takedown that a
    human must decide also queues the item for review. A takedown that does not run
    automatically is always e-mailed, even when the bank's policy has no ``notify``.
    """
    actions = bank_actions(category, configured)
    steps: list[tuple[ActionName, str]] = []
    mode: TakedownMode | None = None
    if "takedown" in actions:
        mode = takedown_mode(category, auto_takedown=auto_takedown)
        steps.append(("takedown", mode))
    if "notify" in actions or mode in ("would_take_down", "needs_review"):
        steps.append(("notify", "email"))
    if "review" in actions or mode == "needs_review":
        steps.append(("review", "queue"))
    return steps
