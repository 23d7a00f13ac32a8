"""The `mediaguard` command: the same Service as the API."""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, BinaryIO

import typer

from mediaguard.banks.formats import detect_format, write_csv, write_text
from mediaguard.config import NsfwMode, Settings, load_settings
from mediaguard.errors import InvalidInputError, MediaguardError, MediaTooLargeError
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
banks_app = typer.Typer(help="Hash banks: create, import, export, fetch.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(tokens_app, name="tokens")
terms_app = typer.Typer(help="Sensitive-term list and item re-evaluation.", no_args_is_help=True)
app.add_typer(banks_app, name="banks")
app.add_typer(terms_app, name="terms")

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
            create_app(service, jobs=True),
            host=host,
            port=port,
            log_config=None,
            access_log=False,
            server_header=False,
            proxy_headers=True,
            forwarded_allow_ips=settings.forwarded_allow_ips,
        )


@app.command()
def worker(
    workers: Annotated[
        int, typer.Option("--workers", "-w", min=1, help="Threads taking items off the queue.")
    ] = 4,
    metrics_port: Annotated[
        int | None,
        typer.Option(help="Serve this process's /metrics on this port (0.0.0.0)."),
    ] = None,
) -> None:
    """Process queued uploads until SIGTERM (finishes the items in hand) or SIGINT. Run one per
    machine with MEDIAGUARD_REDIS_URL set; each also sweeps expired leases and lost messages."""
    from prometheus_client import start_http_server

    from mediaguard.jobs.worker import run_worker

    settings = load_settings()
    configure_logging(settings.log_level, json=settings.log_json)
    embedded = settings.database_url.startswith("sqlite")
    with _service(settings, migrate=embedded) as service:
        if metrics_port is not None:
            start_http_server(metrics_port, registry=service.metrics.registry)
        run_worker(service, workers=workers)


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


@banks_app.command("list")
def banks_list() -> None:
    """List banks: name, category, PDQ threshold, enabled, exchange."""
    with _service(load_settings()) as service:
        for bank in service.banks.all():
            state = "enabled" if bank.enabled else "disabled"
            exchange = bank.exchange or "-"
            typer.echo(f"{bank.name}\t{bank.category}\t{bank.pdq_threshold}\t{state}\t{exchange}")


@banks_app.command("create")
def banks_create(
    name: Annotated[str, typer.Argument(help="NAME_IN_CAPITALS")],
    category: Annotated[
        str, typer.Option(help="child_protection, terrorism, ncii or other")
    ] = "other",
    threshold: Annotated[int, typer.Option(help="PDQ distance threshold, 0..63")] = 31,
    actions: Annotated[
        str | None, typer.Option(help="notify,takedown,review (default: the category's)")
    ] = None,
    exchange: Annotated[str | None, typer.Option(help="local_file, ncmec, stop_ncii, ...")] = None,
    exchange_config: Annotated[
        str | None, typer.Option(help='JSON, e.g. {"filename": "/srv/list.txt"}')
    ] = None,
) -> None:
    """Create a bank."""
    try:
        config = json.loads(exchange_config) if exchange_config else None
    except ValueError as exc:
        raise typer.BadParameter(f"--exchange-config is not JSON: {exc}") from None
    with _service(load_settings(), migrate=True) as service:
        try:
            service.banks.create(
                name,
                category=category,
                pdq_threshold=threshold,
                actions=actions.split(",") if actions else None,
                exchange=exchange,
                exchange_config=config,
                actor="cli",
            )
        except MediaguardError as exc:
            raise _fail(exc) from None
    typer.echo(f"created {name}")


@banks_app.command("import")
def banks_import(
    name: Annotated[str, typer.Argument(help="The bank")],
    path: Annotated[Path, typer.Argument(help="A text or CSV hash list ('-': stdin)")],
    format: Annotated[
        str | None, typer.Option(help="text or csv (default: from the file name)")
    ] = None,
    signal_type: Annotated[
        str | None, typer.Option("--type", help="pdq, md5, sha1 or sha256, for bare lines")
    ] = None,
    skip_errors: Annotated[bool, typer.Option(help="Skip bad lines instead of stopping")] = False,
) -> None:
    """Import a hash list into a bank (hashes already there are skipped)."""
    fmt = format or detect_format(str(path))
    if fmt not in ("text", "csv"):
        raise typer.BadParameter("--format must be text or csv")
    with _service(load_settings()) as service:
        try:
            with _open_bytes(path) as stream:
                result, stats = service.banks.import_list(
                    name,
                    stream,
                    fmt,  # type: ignore[arg-type]
                    signal_type=signal_type,
                    on_error="skip" if skip_errors else "raise",
                    actor="cli",
                )
        except MediaguardError as exc:
            raise _fail(exc) from None
    typer.echo(
        f"added {result.added}, already in the bank {result.duplicates}, "
        f"skipped {stats.skipped} bad line(s)"
    )
    for error in stats.errors:
        typer.echo(f"  {error}", err=True)


@banks_app.command("export")
def banks_export(
    name: Annotated[str, typer.Argument(help="The bank")],
    path: Annotated[Path | None, typer.Argument(help="Output file (default: stdout)")] = None,
    format: Annotated[str, typer.Option(help="text or csv")] = "text",
) -> None:
    """Export a bank's hashes as a text or CSV list."""
    writer = write_csv if format == "csv" else write_text
    with _service(load_settings()) as service:
        try:
            service.banks.get(name)
            if path is None:
                count = writer(sys.stdout, service.banks.export(name))
            else:
                with path.open("w", encoding="utf-8", newline="") as stream:
                    count = writer(stream, service.banks.export(name))
        except MediaguardError as exc:
            raise _fail(exc) from None
    typer.echo(f"exported {count} hash(es)", err=True)


@banks_app.command("fetch")
def banks_fetch(name: Annotated[str, typer.Argument(help="A bank with an exchange")]) -> None:
    """Fetch a bank's exchange, resuming from its last checkpoint."""
    with _service(load_settings()) as service:
        try:
            result = service.banks.fetch(name, service.exchange_credentials(), actor="cli")
        except (MediaguardError, ValueError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(code=2) from None
    typer.echo(
        f"added {result.added}, removed {result.removed}, already in the bank "
        f"{result.duplicates}, in {result.batches} batch(es)"
    )


@terms_app.command("status")
def terms_status(
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object")] = False,
) -> None:
    """The list in force and how far re-evaluating the items against it got."""
    with _service(load_settings()) as service:
        status = service.terms.status()
    fields = {
        "version": status.version,
        "terms": status.terms,
        "source": status.source,
        "loaded_at": status.loaded_at.isoformat() if status.loaded_at else None,
        "relabelled": status.relabelled,
        "items_to_relabel": status.stale,
        "finished_at": status.finished_at.isoformat() if status.finished_at else None,
    }
    if json_out:
        typer.echo(json.dumps(fields))
    else:
        for name, value in fields.items():
            typer.echo(f"{name}\t{value if value is not None else '-'}")


@terms_app.command("relabel")
def terms_relabel(
    progress: Annotated[bool, typer.Option(help="A progress bar on stderr (on a terminal)")] = True,
) -> None:
    """Load the configured list, then re-evaluate every item against it, to the end. Resumes
    where an interrupted run (or a worker) stopped; workers do the same in the background."""
    from rich.progress import Progress

    settings = load_settings()
    configure_logging("WARNING", json=settings.log_json)
    with _service(settings, migrate=settings.database_url.startswith("sqlite")) as service:
        current = service.terms.load()
        if current is None:
            typer.echo("no term list: set MEDIAGUARD_SENSITIVE_TERMS_FILE or _URL", err=True)
            raise typer.Exit(code=2)
        total = service.terms.status().stale
        with Progress(disable=not (progress and sys.stderr.isatty())) as bar:
            task = bar.add_task("relabelling", total=total)
            while service.terms.relabel(budget=1.0):
                bar.update(task, completed=total - service.terms.status().stale)
            bar.update(task, completed=total)
        status = service.terms.status()
    if status.stale:
        typer.echo(f"{status.stale} items left: another process holds the re-evaluation", err=True)
        raise typer.Exit(code=1)
    typer.echo(f"{status.terms} terms (version {status.version[:12]}); every item labelled")


@contextmanager
def _open_bytes(path: Path) -> Iterator[BinaryIO]:
    """The list as a seekable byte stream; standard input is spooled first."""
    if str(path) == "-":
        with tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024) as spool:
            shutil.copyfileobj(sys.stdin.buffer, spool)
            spool.seek(0)
            yield spool  # type: ignore[misc]
        return
    try:
        stream = path.open("rb")
    except OSError as exc:
        raise InvalidInputError(f"cannot read {path}: {exc.strerror}") from None
    with stream:
        yield stream


@app.command()
def backfill(
    source: Annotated[Path, typer.Argument(help="A URL list, a directory, or a JSON-lines export")],
    format: Annotated[
        str, typer.Option(help="auto, urls or jsonl (auto: .jsonl/.ndjson are JSON lines)")
    ] = "auto",
    batch_size: Annotated[
        int, typer.Option(min=1, help="Entries submitted between checkpoints")
    ] = 100,
    checkpoint: Annotated[
        Path | None, typer.Option(help="Checkpoint file (default: <SOURCE>.checkpoint)")
    ] = None,
    restart: Annotated[
        bool, typer.Option("--restart", help="Ignore and overwrite the checkpoint")
    ] = False,
    rate: Annotated[
        float | None, typer.Option(min=0.001, help="At most this many entries a second")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Write nothing; count what would happen")
    ] = False,
    rescan_older_than: Annotated[
        str | None,
        typer.Option(help="Requeue items processed before this ISO date or time (UTC if no zone)"),
    ] = None,
    workers: Annotated[
        int, typer.Option(min=0, help="Also process the items here with N workers (0: only submit)")
    ] = 0,
    progress: Annotated[bool, typer.Option(help="A progress bar on stderr (on a terminal)")] = True,
    json_summary: Annotated[
        bool, typer.Option("--json", help="Print the summary as one JSON object")
    ] = False,
) -> None:
    """Submit the files a platform already has to the upload pipeline, resumably."""
    from mediaguard.jobs import backfill as job

    try:
        source_format = job.parse_format(format)
    except ValueError:
        raise typer.BadParameter("--format must be auto, urls or jsonl") from None
    try:
        since = job.parse_when(rescan_older_than) if rescan_older_than else None
    except ValueError:
        raise typer.BadParameter("--rescan-older-than must be an ISO date or time") from None
    options = job.BackfillOptions(
        source=source,
        format=source_format,
        batch_size=batch_size,
        checkpoint=checkpoint,
        restart=restart,
        rate=rate,
        dry_run=dry_run,
        rescan_older_than=since,
        workers=workers,
        progress=progress,
        json=json_summary,
    )
    settings = load_settings()
    configure_logging("WARNING", json=settings.log_json)
    code = job.run_command(options, settings, lambda: _service(settings))
    raise typer.Exit(code=code)


def main() -> None:  # pragma: no cover - console entry
    app(prog_name="mediaguard")
    sys.exit(0)
