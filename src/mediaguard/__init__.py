"""mediaguard: a self-hostable content-safety service for open media platforms."""

__version__ = "0.1.0"
