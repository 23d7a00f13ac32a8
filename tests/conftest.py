"""Shared fixtures live in tests/fixtures/; each module is a pytest plugin."""

pytest_plugins = [
    "fixtures.databases",
    "fixtures.servers",
    "fixtures.images",
    "fixtures.service",
    "fixtures.smtp",
    "fixtures.redis_server",
    "fixtures.tcp_proxy",
    "fixtures.browser",
]
