"""The HTTP API: one router per resource, all calling the same Service."""

from mediaguard.api.app import create_app

__all__ = ["create_app"]
