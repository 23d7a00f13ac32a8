"""The docs keep up with the code: every setting, every route, the CLI reference, the container."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from mediaguard.config import Settings

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


@pytest.mark.parametrize("name", sorted(Settings.model_fields))
def test_every_setting_is_documented(name: str) -> None:
    assert f"`MEDIAGUARD_{name.upper()}`" in README


def test_every_route_is_documented(api: object) -> None:
    app_routes = api.client.get("/openapi.json").json()["paths"]  # type: ignore[attr-defined]
    for path in app_routes:
        assert f"`{path}`" in README or f" {path}`" in README, path


def test_readme_opens_with_the_two_commands() -> None:
    first_block = re.search(r"```sh\n(.*?)```", README, re.S)
    assert first_block is not None
    commands = [line.split("#")[0].strip() for line in first_block.group(1).splitlines()]
    assert commands == ["make serve", "make test"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci


def test_cli_reference_is_generated_from_help() -> None:
    generated = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "cli_reference.py")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert (ROOT / "docs" / "cli.md").read_text() == generated, "run `make docs`"


def test_container_is_multi_stage_non_root_with_a_healthcheck() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM ", dockerfile, re.M)) >= 2
    users = re.findall(r"^USER (\S+)", dockerfile, re.M)
    assert users and users[-1] not in ("root", "0")
    assert re.search(r"^HEALTHCHECK .*", dockerfile, re.M | re.S)
    assert "/healthz" in dockerfile
