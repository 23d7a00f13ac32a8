"""The core: the CLI, the API and the workers all call these methods.

Scoring reads as a pipeline: ``fetch_bytes`` -> digests -> the store (a hit ends here) ->
``_decode`` -> ``_extract`` -> the store. Matching: ``fetch_bytes`` -> ``_decode`` -> every hash ->
the banks -> policy -> actions (``checks.Checker``). Banks are curated through
``service.banks``; uploads go through ``service.pipeline`` (intake, processing, the sweeper).
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from mediaguard.actions.runner import ActionRunner
from mediaguard.auth import authorize
from mediaguard.banks.admin import BankAdmin
from mediaguard.banks.exchanges import ExchangeCredentials
from mediaguard.banks.follower import IndexFollower, IndexStatus
from mediaguard.banks.matcher import BankMatch, Matcher
from mediaguard.catalogue import Catalogue
from mediaguard.checks import Checker, CheckResult
from mediaguard.config import NsfwMode, Settings
from mediaguard.errors import (
    AuthenticationError,
    MediaError,
    MediaguardError,
    MediaTooLargeError,
    NotReadyError,
    TooManyItemsError,
)
from mediaguard.jobs.terms import TermKeeper
from mediaguard.media.decode import DecodedMedia, decode
from mediaguard.media.fetch import FetchPolicy, GuardedFetcher
from mediaguard.metrics import Metrics
from mediaguard.pipeline import Pipeline
from mediaguard.review import Review
from mediaguard.signals.digests import (
    ContentDigests,
    compute_digests,
    parse_digest,
    sha1_hex_to_base36,
)
from mediaguard.signals.hashes import MediaHashes, hash_media
from mediaguard.signals.nsfw import MODEL_NAME, NsfwSignal
from mediaguard.store import Role, Store, StoredScore, TokenInfo
from mediaguard.store.items import ActionInfo

MAX_LOOKUP_DIGESTS = 1000


class ScoreFields(BaseModel):
    """A stored score as clients see it; the routes add what their context knows."""

    score: float = Field(description="0.0 (safe) .. 1.0 (NSFW)", examples=[0.0317])
    model: str = Field(examples=[MODEL_NAME])
    model_version: str = Field(examples=["open_nsfw/resnet50-1by2-864bb37b/exact"])
    sha1: str = Field(examples=["2fd4e1c67a2d28fced849ee1bb76e7391b93eb12"])
    sha1_base36: str = Field(
        description="MediaWiki's img_sha1", examples=["5l538vehydhyhvhdqqto838i5g6045u"]
    )
    sha256: str
    width: int
    height: int
    format: str = Field(examples=["JPEG"])

    @staticmethod
    def of(stored: StoredScore) -> dict[str, Any]:
        return {
            "score": stored.score,
            "model": stored.model,
            "model_version": stored.model_version,
            "sha1": stored.sha1,
            "sha1_base36": sha1_hex_to_base36(stored.sha1),
            "sha256": stored.sha256,
            "width": stored.width,
            "height": stored.height,
            "format": stored.media_format,
        }


class ScoreResult(ScoreFields):
    """The NSFW score of one image, with the digests it is stored under."""

    cached: bool = Field(description="true when the score came from the store, not the model")
    source: str | None = Field(None, description="URL or path the image came from")

    @classmethod
    def from_stored(cls, stored: StoredScore, *, cached: bool, source: str | None) -> ScoreResult:
        return cls(**ScoreFields.of(stored), cached=cached, source=source)


@dataclass(frozen=True)
class _InFlight:
    """An image decoded and queued for the model; `score` is filled in when it answers."""

    score: StoredScore
    source: str | None
    started: float
    probabilities: Future[np.ndarray]


class Service:
    """Holds the store, the fetcher, the models and the metrics; everything else calls it."""

    def __init__(
        self,
        settings: Settings,
        *,
        store: Store,
        fetcher: GuardedFetcher,
        metrics: Metrics | None = None,
        models: dict[NsfwMode, NsfwSignal] | None = None,
    ) -> None:
        """`models` lends already-loaded models (tests share them); lent models are not closed."""
        self.settings = settings
        self.store = store
        self.fetcher = fetcher
        self.metrics = metrics or Metrics()
        self._models: dict[NsfwMode, NsfwSignal] = dict(models or {})
        self._lent_models = set(self._models.values())
        self._models_lock = threading.Lock()
        # Threads for batch work (fetches wait on the network); decodes are capped separately,
        # which also bounds the memory that large images take at once.
        self._pool = ThreadPoolExecutor(
            settings.decode_threads + settings.nsfw_batch_size, thread_name_prefix="score"
        )
        self._decode_slots = threading.BoundedSemaphore(settings.decode_threads)
        self.follower = IndexFollower(store.banks, interval=settings.index_sync_interval)
        self.matcher = Matcher(store.banks, self.follower)
        self.banks = BankAdmin(store, self.follower)
        self.actions = ActionRunner(settings, store.items)
        self.checker = Checker(settings, store, self.matcher, self.actions)
        self.pipeline = Pipeline(self)
        self.terms = TermKeeper(
            settings, store.terms, fetcher, self.metrics, owner=self.pipeline.owner
        )
        self.catalogue = Catalogue(settings, store, self.metrics)
        self.review = Review(settings, store, self.metrics)
        self.metrics.pdq_index_hashes.set_function(lambda: len(self.follower.index))
        self.metrics.pdq_index_sync_age.set_function(
            lambda: self.follower.status().seconds_since_sync or 0.0
        )
        self.metrics.watch_queue(store.media.stats, self.pipeline.queued_messages)

    # -- models ----------------------------------------------------------------------------

    def nsfw(self, mode: NsfwMode | None = None) -> NsfwSignal:
        """The model for `mode` (default: the configured one), loaded on first use."""
        mode = mode or self.settings.nsfw_mode
        signal = self._models.get(mode)
        if signal is None:
            with self._models_lock:
                signal = self._models.get(mode)
                if signal is None:
                    signal = NsfwSignal(
                        mode,
                        batch_size=self.settings.nsfw_batch_size,
                        batch_wait=self.settings.nsfw_batch_wait_ms / 1000,
                        threads=self.settings.nsfw_threads,
                        observer=self.metrics.observe_batch,
                    )
                    self._models[mode] = signal
        return signal

    def warm_up(self) -> str:
        """Compile the PDQ hasher and load the model, so no request waits for either; the model
        version. Readiness waits for this."""
        from mediaguard.signals import pdq_fast

        pdq_fast.warm_up()
        return self.nsfw().version

    def model_loaded(self, mode: NsfwMode | None = None) -> bool:
        return (mode or self.settings.nsfw_mode) in self._models

    def current_model_version(self) -> str | None:
        signal = self._models.get(self.settings.nsfw_mode)
        return signal.version if signal else None

    # -- scoring ---------------------------------------------------------------------------

    def score_bytes(
        self, content: bytes, *, mode: NsfwMode | None = None, source: str | None = None
    ) -> ScoreResult:
        signal = self.nsfw(mode)
        step = self._start(content, signal, source)
        return step if isinstance(step, ScoreResult) else self._finish([step], signal)[0]

    def score_url(self, url: str, *, mode: NsfwMode | None = None) -> ScoreResult:
        return self.score_bytes(self.fetch_bytes(url), mode=mode, source=url)

    def score_many(
        self, items: Sequence[bytes | str], *, mode: NsfwMode | None = None
    ) -> list[ScoreResult | MediaguardError]:
        """Score in parallel: bytes are image content, strings are URLs. Each item's error is
        returned in its place, not raised. Decoding goes on while earlier images are in the
        model, and the new scores are stored in one transaction."""
        signal = self.nsfw(mode)
        steps = list(self._pool.map(lambda item: self._attempt_start(item, signal), items))
        finished = iter(self._finish([s for s in steps if isinstance(s, _InFlight)], signal))
        return [next(finished) if isinstance(step, _InFlight) else step for step in steps]

    def _attempt_start(
        self, item: bytes | str, signal: NsfwSignal
    ) -> ScoreResult | _InFlight | MediaguardError:
        try:
            if isinstance(item, str):
                return self._start(self.fetch_bytes(item), signal, item)
            return self._start(item, signal, None)
        except MediaguardError as exc:
            return exc

    def _start(
        self, content: bytes, signal: NsfwSignal, source: str | None
    ) -> ScoreResult | _InFlight:
        """Limits, digests and the store; on a miss, decode and queue the tensor for the model."""
        digests, stored = self.stored_score(content, signal)
        if stored is not None:
            return ScoreResult.from_stored(stored, cached=True, source=source)
        started = time.perf_counter()
        with self._decode_slots:
            media = self._decode(content, signal.draft_size)
            tensor = signal.preprocess(media)
        return _InFlight(
            _score_row(media, digests, signal, math.nan),
            source,
            started,
            signal.submit_tensor(tensor),
        )

    def stored_score(
        self, content: bytes, signal: NsfwSignal
    ) -> tuple[ContentDigests, StoredScore | None]:
        """The size limit, the digests, and the score the store holds for this content and
        model version, if any."""
        self.check_size(content)
        digests = compute_digests(content)
        stored = self.store.scores.get(digests.sha256, signal.version)
        self.metrics.store_lookups.labels("hit" if stored else "miss").inc()
        return digests, stored

    def _finish(self, in_flight: list[_InFlight], signal: NsfwSignal) -> list[ScoreResult]:
        """Wait for the model's answers and store them."""
        scores = []
        for item in in_flight:
            score = signal.score_of(item.probabilities.result())
            self.metrics.scoring_seconds.labels(signal.mode).observe(
                time.perf_counter() - item.started
            )
            scores.append(dataclasses.replace(item.score, score=score))
        self.metrics.images_scored.labels(signal.mode).inc(len(scores))
        stored = self.store.scores.put_many(scores) if scores else []
        return [
            ScoreResult.from_stored(row, cached=False, source=item.source)
            for row, item in zip(stored, in_flight, strict=True)
        ]

    def fetch_bytes(self, url: str) -> bytes:
        try:
            return self.fetcher.fetch(url).content
        except MediaguardError as exc:
            self.metrics.fetch_failures.labels(exc.code).inc()
            raise

    def _decode(self, content: bytes, draft: tuple[int, int] | None = None) -> DecodedMedia:
        try:
            return decode(content, max_pixels=self.settings.max_image_pixels, draft=draft)
        except MediaError as exc:
            self.metrics.decode_failures.labels(exc.code).inc()
            raise

    def decode_for_signals(
        self, content: bytes, digests: ContentDigests, signal: NsfwSignal | None
    ) -> tuple[DecodedMedia, MediaHashes, np.ndarray | None]:
        """One full decode for every signal: the hashes, and ``signal``'s input when given."""
        with self._decode_slots:
            media = self._decode(content)
            hashes = hash_media(media, digests)
            tensor = signal.preprocess(media) if signal else None
        return media, hashes, tensor

    def score_row(
        self,
        media: DecodedMedia,
        digests: ContentDigests,
        signal: NsfwSignal,
        probabilities: Future[np.ndarray],
    ) -> StoredScore:
        """Wait for the model's answer for one image: the row the store keeps (the caller
        stores it, e.g. with ``store.scores.put_in`` inside its own transaction)."""
        score = signal.score_of(probabilities.result())
        self.metrics.images_scored.labels(signal.mode).inc()
        return _score_row(media, digests, signal, score)

    # -- hashing and matching ---------------------------------------------------------------

    def hash_bytes(self, content: bytes) -> MediaHashes:
        """Every hash of an image: digests of the bytes, PDQ of its one full decode."""
        self.check_size(content)
        with self._decode_slots:
            return hash_media(self._decode(content))

    def hash_url(self, url: str) -> MediaHashes:
        return self.hash_bytes(self.fetch_bytes(url))

    def match(
        self,
        signals: dict[str, str],
        *,
        pdq_quality: int | None = None,
        banks: Iterable[str] | None = None,
    ) -> list[BankMatch]:
        """Live bank matches of normalised hashes (signal_type -> value)."""
        return self.matcher.match(
            signals, pdq_quality=pdq_quality, banks=None if banks is None else set(banks)
        )

    def check_bytes(
        self,
        content: bytes,
        *,
        platform_id: str = "",
        media_url: str | None = None,
        actor: str = "system",
    ) -> CheckResult:
        """Hash, match the banks, record the item and run the actions policy plans."""
        hashes = self.hash_bytes(content)
        return self.checker.check(hashes, platform_id=platform_id, media_url=media_url, actor=actor)

    def check_url(self, url: str, *, platform_id: str = "", actor: str = "system") -> CheckResult:
        return self.check_bytes(
            self.fetch_bytes(url), platform_id=platform_id, media_url=url, actor=actor
        )

    def check_digest(
        self,
        *,
        sha256: str,
        sha1: str | None = None,
        platform_id: str = "",
        media_url: str | None = None,
        actor: str = "system",
    ) -> CheckResult:
        return self.count_check(
            self.checker.check_known(
                sha256=sha256, sha1=sha1, platform_id=platform_id, media_url=media_url, actor=actor
            )
        )

    def count_check(self, result: CheckResult) -> CheckResult:
        self.metrics.checks.labels(result.item.match_status or "unknown").inc()
        for match in result.new_matches:
            self.metrics.new_matches.labels(match.category, match.signal_type).inc()
        for action in result.actions:
            self.metrics.actions.labels(action.action, action.status).inc()
        return result

    def retry_action(self, action_id: int, *, actor: str = "system") -> ActionInfo:
        return self.checker.retry(action_id, actor=actor)

    def start_index(self, *, wait: bool = False) -> None:
        """Load the PDQ index in the background and follow bank changes from then on."""
        self.follower.start()
        if wait:
            self.follower.wait_ready()

    def index_status(self) -> IndexStatus:
        return self.follower.status()

    def exchange_credentials(self) -> ExchangeCredentials:
        settings = self.settings
        return ExchangeCredentials.from_settings(
            {
                "ncmec": settings.ncmec_credentials,
                "stop_ncii": settings.stop_ncii_credentials,
                "tech_against_terrorism": settings.tech_against_terrorism_credentials,
                "fb_threatexchange": settings.fb_threatexchange_credentials,
            }
        )

    def check_size(self, content: bytes) -> None:
        limit = self.settings.max_image_bytes
        if len(content) > limit:
            self.metrics.decode_failures.labels("media_too_large").inc()
            raise MediaTooLargeError(f"image is {len(content)} bytes; the limit is {limit}")

    # -- lookups ---------------------------------------------------------------------------

    def lookup(self, digest: str) -> list[StoredScore]:
        return self.lookup_many([digest])[digest]

    def lookup_many(self, digests: Sequence[str]) -> dict[str, list[StoredScore]]:
        """Stored scores for each digest (SHA-1 hex or base-36, SHA-256), every model version."""
        if len(digests) > MAX_LOOKUP_DIGESTS:
            raise TooManyItemsError(
                f"{len(digests)} digests; at most {MAX_LOOKUP_DIGESTS} per lookup"
            )
        parsed = {digest: parse_digest(digest) for digest in digests}
        found = self.store.scores.find(
            sha1=[h for kind, h in parsed.values() if kind == "sha1"],
            sha256=[h for kind, h in parsed.values() if kind == "sha256"],
        )
        by_key: dict[tuple[str, str], list[StoredScore]] = {}
        for stored in found:
            by_key.setdefault(("sha1", stored.sha1), []).append(stored)
            by_key.setdefault(("sha256", stored.sha256), []).append(stored)
        answer = {digest: by_key.get(key, []) for digest, key in parsed.items()}
        for scores in answer.values():
            self.metrics.digest_lookups.labels("found" if scores else "missing").inc()
        return answer

    # -- auth ------------------------------------------------------------------------------

    def authenticate(self, token: str | None) -> TokenInfo:
        if not token:
            raise AuthenticationError("a bearer token is required")
        info = self.store.tokens.verify(token)
        if info is None:
            raise AuthenticationError("unknown or revoked token")
        return info

    def authorize(self, token: str | None, roles: Iterable[Role]) -> TokenInfo:
        return authorize(self.authenticate(token), roles)

    def create_token(self, name: str, role: Role) -> tuple[str, TokenInfo]:
        return self.store.tokens.create(name, role)

    def list_tokens(self) -> list[TokenInfo]:
        return self.store.tokens.list()

    def revoke_token(self, name: str) -> TokenInfo:
        return self.store.tokens.revoke(name)

    # -- operations ------------------------------------------------------------------------

    def check_ready(self) -> dict[str, str]:
        """Raises NotReadyError unless the database answers, is migrated and the model is loaded."""
        self.store.ping()
        if not self.store.is_current():
            raise NotReadyError("the database schema is not migrated: run `mediaguard db upgrade`")
        if not self.model_loaded():
            raise NotReadyError("the NSFW model is still loading")
        index = self.follower.status()
        if not index.ready:
            raise NotReadyError("the PDQ index is still loading")
        if index.stale:
            raise NotReadyError("the PDQ index has not synced with the database recently")
        return {"database": "ok", "model": self.nsfw().version, "pdq_index": f"{index.size}"}

    def close(self) -> None:
        self.follower.stop()
        self._pool.shutdown(wait=True)
        for signal in self._models.values():
            if signal not in self._lent_models:
                signal.close()
        self.fetcher.close()
        self.store.close()


def _score_row(
    media: DecodedMedia, digests: ContentDigests, signal: NsfwSignal, score: float
) -> StoredScore:
    return StoredScore(
        sha256=digests.sha256,
        sha1=digests.sha1,
        model=MODEL_NAME,
        model_version=signal.version,
        score=score,
        width=media.width,
        height=media.height,
        media_format=media.media_format,
        created_at=datetime.now(UTC),
    )


def build_service(settings: Settings, *, migrate: bool = False) -> Service:
    store = Store(settings.database_url)
    if migrate:
        store.upgrade()
    return Service(
        settings, store=store, fetcher=GuardedFetcher(FetchPolicy.from_settings(settings))
    )
