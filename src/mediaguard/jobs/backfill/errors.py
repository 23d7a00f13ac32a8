"""The one error a backfill run stops on."""

from __future__ import annotations


class BackfillError(Exception):
    """The run cannot start or go on; ``exit_code`` is the command's (1: source, 2: options)."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
