"""Signals: one module each, computed from one decode of the media."""
