"""The `mediaguard` command: the same Service as the API."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from mediaguard.config import NsfwMode, Settings, load_settings
from mediaguard.errors import MediaguardError, MediaTooLargeError
from mediaguard.logs import configure_logging, get_logger
from mediaguard.service import ScoreResult, Service, build_service
from mediaguard.store import ROLES, Store

app = typer.Typer(
    help="mediaguard: content safety for open media platforms.",
    no_args_is_help=True,
    add_completion=False,
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
tokens_app = typer.Typer(help="API tokens.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(tokens_app, name="tokens")

CHUNK = 32  # sources read into memory at once by `score`


@contextmanager
def _service(settings: Settings, *, migrate: bool = False) -> Iterator[Service]:
    service = build_service(settings, migrate=migrate)
    try:
        yield service
    finally:
        service.close()


def _fail(error: MediaguardError) -> typer.Exit:
    typer.echo(f"error: {error.message}", err=True)
    return typer.Exit(code=2)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Listen address [MEDIAGUARD_HOST]")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port [MEDIAGUARD_PORT]")] = None,
    migrate: Annotated[
        bool | None,
        typer.Option(help="Upgrade the schema first (default: yes on SQLite, no elsewhere)"),
    ] = None,
) -> None:
    """Run the HTTP API."""
    import uvicorn

    from mediaguard.api import create_app

    settings = load_settings()
    configure_logging(settings.log_level, json=settings.log_json)
    embedded = settings.database_url.startswith("sqlite")
    host, port = host or settings.host, port or settings.port
    with _service(settings, migrate=embedded if migrate is None else migrate) as service:
        get_logger("mediaguard").info(
            "serving", url=f"http://{host}:{port}", nsfw_mode=settings.nsfw_mode
        )
        uvicorn.run(
            create_app(service),
            host=host,
            port=port,
            log_config=None,
            access_log=False,
            server_header=False,
        )


@app.command()
def score(
    sources: Annotated[list[str], typer.Argument(help="Image paths or http(s) URLs.")],
    json_lines: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    mode: Annotated[
        NsfwMode | None, typer.Option(help="exact or fast [MEDIAGUARD_NSFW_MODE]")
    ] = None,
) -> None:
    """Score images; exits 1 if any could not be scored."""
    settings = load_settings()
    configure_logging("WARNING", json=settings.log_json)
    failed = False
    with _service(settings, migrate=settings.database_url.startswith("sqlite")) as service:
        for start in range(0, len(sources), CHUNK):
            chunk = sources[start : start + CHUNK]
            items = [_read_source(source, settings) for source in chunk]
            scorable = [item for item in items if not isinstance(item, MediaguardError)]
            results = iter(service.score_many(scorable, mode=mode))
            for source, item in zip(chunk, items, strict=True):
                result = item if isinstance(item, MediaguardError) else next(results)
                failed |= isinstance(result, MediaguardError)
                _echo(source, result, json_lines)
    if failed:
        raise typer.Exit(code=1)


def _read_source(source: str, settings: Settings) -> bytes | str | MediaguardError:
    if source.startswith(("http://", "https://")):
        return source
    path = Path(source)
    try:
        if path.stat().st_size > settings.max_image_bytes:
            return MediaTooLargeError(f"file is over the limit of {settings.max_image_bytes} bytes")
        return path.read_bytes()
    except OSError as exc:
        return MediaguardError(f"cannot read: {exc.strerror}", code="unreadable")


def _echo(source: str, result: ScoreResult | MediaguardError, json_lines: bool) -> None:
    if isinstance(result, MediaguardError):
        if json_lines:
            typer.echo(json.dumps({"source": source, **result.to_dict()}))
        else:
            typer.echo(f"error      {source}: {result.message}", err=True)
        return
    if json_lines:
        typer.echo(json.dumps(result.model_copy(update={"source": source}).model_dump()))
    else:
        typer.echo(f"{result.score:.8f} {source}")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Migrate the database to the newest schema."""
    store = Store(load_settings().database_url)
    try:
        store.upgrade()
        typer.echo(f"database at revision {store.current_revision()}")
    finally:
        store.close()


@db_app.command("current")
def db_current() -> None:
    """Print the schema revision (empty: never migrated)."""
    store = Store(load_settings().database_url)
    try:
        typer.echo(store.current_revision() or "")
    finally:
        store.close()


@tokens_app.command("create")
def tokens_create(
    role: Annotated[str, typer.Option(help=f"One of: {', '.join(ROLES)}")],
    name: Annotated[str, typer.Option(help="A unique name, e.g. the client's")],
) -> None:
    """Create a token and print it once (only its hash is stored)."""
    with _service(load_settings(), migrate=True) as service:
        try:
            token, _ = service.create_token(name, role)  # type: ignore[arg-type]
        except MediaguardError as exc:
            raise _fail(exc) from None
    typer.echo(token)


@tokens_app.command("list")
def tokens_list() -> None:
    """List tokens (never their values)."""
    with _service(load_settings()) as service:
        for info in service.list_tokens():
            state = "revoked" if info.revoked_at else "active"
            typer.echo(f"{info.name}\t{info.role}\tmg_{info.prefix}…\t{state}")


@tokens_app.command("revoke")
def tokens_revoke(name: Annotated[str, typer.Argument()]) -> None:
    """Revoke a token by name."""
    with _service(load_settings()) as service:
        try:
            service.revoke_token(name)
        except MediaguardError as exc:
            raise _fail(exc) from None
    typer.echo(f"revoked {name}")


def main() -> None:  # pragma: no cover - console entry
    app(prog_name="mediaguard")
    sys.exit(0)
