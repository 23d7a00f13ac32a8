"""Fetch shared hash lists into a bank from the exchanges the threatexchange library talks to.

:func:`fetch` yields :class:`FetchBatch` es. Each carries the exchange's checkpoint after that
batch; the caller applies a batch, then stores its checkpoint, and passes the last stored one to
the next fetch, which resumes after the last applied batch.

Only the signal types a bank holds come through, normalised: image PDQ, and MD5 / SHA-1 / SHA-256
digests of the file. Everything else (URLs, text, video hashes, PhotoDNA...) is counted in
:attr:`FetchBatch.unsupported` and dropped, and values that do not parse are counted in
:attr:`FetchBatch.invalid`.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar, cast

import dacite
from threatexchange.exchanges.clients.fb_threatexchange.api import is_valid_app_token
from threatexchange.exchanges.clients.ncmec.hash_api import (
    NCMECEntryType,
    NCMECEntryUpdate,
    NCMECEnvironment,
)
from threatexchange.exchanges.clients.stopncii.api import (
    StopNCIICaseStatus,
    StopNCIIHashRecord,
    StopNCIISignalType,
)
from threatexchange.exchanges.collab_config import (
    CollaborationConfigBase,
    CollaborationConfigWithDefaults,
)
from threatexchange.exchanges.fetch_state import FetchCheckpointBase, FetchedSignalMetadata
from threatexchange.exchanges.impl.fb_threatexchange_api import (
    FBThreatExchangeCollabConfig,
    FBThreatExchangeCredentials,
    FBThreatExchangeIndicatorRecord,
    FBThreatExchangeSignalExchangeAPI,
)
from threatexchange.exchanges.impl.file_api import (
    FileCollaborationConfig,
    LocalFileSignalExchangeAPI,
)
from threatexchange.exchanges.impl.ncmec_api import (
    NCMECCollabConfig,
    NCMECCredentials,
    NCMECSignalExchangeAPI,
)
from threatexchange.exchanges.impl.stop_ncii_api import (
    StopNCIICheckpoint,
    StopNCIICredentials,
    StopNCIISignalExchangeAPI,
    StopNCIISignalMetadata,
)
from threatexchange.exchanges.impl.techagainstterrorism_api import (
    TATCredentials,
    TATSignalExchangeAPI,
)
from threatexchange.exchanges.signal_exchange_api import AnySignalExchangeAPI
from threatexchange.signal_type.pdq.signal import PdqSignal

from mediaguard.banks.hashes import SIGNAL_TYPES, InvalidHashError, normalize_hash
from mediaguard.errors import MediaguardError


class ExchangeConfigError(MediaguardError, ValueError):
    """An exchange that cannot be used as configured: unknown, bad config, no credentials."""

    code = "exchange_config"


def credential_setting(exchange: str) -> str:
    """The setting that holds an exchange's credentials."""
    return f"MEDIAGUARD_{exchange.upper()}_CREDENTIALS"


# How each exchange's credentials are written in its setting. The StopNCII pair is in the
# order of threatexchange's StopNCIICredentials and its TX_STOPNCII_KEYS.
_CREDENTIAL_FORMATS = {
    "ncmec": "user:password",
    "stop_ncii": "fetch_function_key:subscription_key",
    "tech_against_terrorism": "username:password",
    "fb_threatexchange": "app_id|app_secret (an app access token)",
}


@dataclass(frozen=True)
class ExchangeCredentials:
    """Credentials of the exchanges that need them; None where not configured."""

    ncmec: tuple[str, str] | None = None
    stop_ncii: tuple[str, str] | None = None
    tech_against_terrorism: tuple[str, str] | None = None
    fb_threatexchange: str | None = None

    @classmethod
    def from_settings(cls, raw: Mapping[str, str | None]) -> ExchangeCredentials:
        """From the setting strings keyed by exchange name; empty or None means not configured."""
        values: dict[str, Any] = {}
        for exchange, text in raw.items():
            if text and text.strip():
                values[exchange] = parse_credentials(exchange, text)
        return cls(**values)

    def __repr__(self) -> str:  # never the secrets themselves
        configured = [name for name in _CREDENTIAL_FORMATS if getattr(self, name) is not None]
        return f"ExchangeCredentials(configured={configured})"


def parse_credentials(exchange: str, raw: str) -> tuple[str, str] | str:
    """One exchange's credentials from its setting: ``user:password``, or a token for
    fb_threatexchange. The error names the setting, never the value."""
    if exchange not in _CREDENTIAL_FORMATS:
        raise ExchangeConfigError(
            f"no credentials for exchange {exchange!r}: "
            f"expected one of {', '.join(_CREDENTIAL_FORMATS)}"
        )
    text = raw.strip()
    problem = f"{credential_setting(exchange)} must be {_CREDENTIAL_FORMATS[exchange]!r}"
    if exchange == "fb_threatexchange":
        if not is_valid_app_token(text):
            raise ExchangeConfigError(problem)
        return text
    first, _, second = text.partition(":")
    if not first or not second:
        raise ExchangeConfigError(problem)
    return first, second


@dataclass(frozen=True)
class HashUpdate:
    """A hash the exchange added or changed, or removed (``metadata`` None).

    ``source_id`` is set by exchanges that key their records by an id rather than by hash
    (NCMEC: ``<esp id>-<entry id>``): the updates of one batch with a source_id are the complete
    set of hashes of that id, replacing whatever was stored under it.
    """

    signal_type: str
    value: str
    metadata: dict[str, str] | None
    source_id: str | None = None


@dataclass(frozen=True)
class FetchBatch:
    """One batch of a fetch, and the checkpoint to store once it is applied.

    ``removed_source_ids``: ids whose hashes must all be dropped (deleted on the exchange, or no
    longer holding a hash a bank can hold). ``restart``: set on the first batch of a fetch that
    started from the beginning (no checkpoint, an expired one, or an exchange such as local_file
    that always sends the whole list); hashes from earlier fetches of this exchange that the
    fetch does not send again are no longer on the list.
    """

    updates: list[HashUpdate]
    checkpoint: str
    removed_source_ids: list[str] = field(default_factory=list)
    restart: bool = False
    unsupported: dict[str, int] = field(default_factory=dict)
    invalid: int = 0


def list_exchanges() -> list[str]:
    return list(_EXCHANGES)


def exchange_needs_credentials(name: str) -> bool:
    return _exchange(name).needs_credentials


def build_client(
    exchange: str,
    config: Mapping[str, Any],
    *,
    credentials: ExchangeCredentials = ExchangeCredentials(),
) -> AnySignalExchangeAPI:
    """The threatexchange client of an exchange, authenticated; no network access."""
    return _connect(exchange, config, credentials)[1]


def fetch(
    exchange: str,
    config: Mapping[str, Any],
    *,
    credentials: ExchangeCredentials = ExchangeCredentials(),
    checkpoint: str | None = None,
) -> Iterator[FetchBatch]:
    """The updates of an exchange since ``checkpoint`` (everything when None), batch by batch.

    ``config`` holds the fields of the exchange's threatexchange collaboration config, e.g.
    ``{"filename": "/srv/list.txt", "signal_type": "pdq"}`` for local_file,
    ``{"environment": "Industry"}`` for ncmec, ``{"privacy_group": 123}`` for fb_threatexchange;
    ``name`` defaults to the exchange's name. Configuration, credentials and the checkpoint are
    checked here, before any network access; the exchange is only contacted while iterating.
    """
    spec, client, collab = _connect(exchange, config, credentials)
    start = _load_checkpoint(exchange, spec, checkpoint)
    if start is not None and start.is_stale():
        start = None  # the exchange may have forgotten its deletions since: start over
    restart = spec.full_snapshot or start is None
    return _batches(spec, client, collab, start, restart, checkpoint)


# Fetching


@dataclass
class _BatchBuilder:
    updates: list[HashUpdate] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unsupported: Counter[str] = field(default_factory=Counter)
    invalid: int = 0

    def add(
        self,
        signal_type: str | None,
        exchange_type: str,
        value: str,
        metadata: dict[str, str] | None,
        source_id: str | None = None,
    ) -> bool:
        """Add a hash of the exchange's type ``exchange_type``, which is ``signal_type`` in a
        bank (None: no bank type). True if it was added."""
        if signal_type is None:
            self.unsupported[exchange_type] += 1
            return False
        try:
            normalized = normalize_hash(signal_type, value)
        except InvalidHashError:
            self.invalid += 1
            return False
        copy = None if metadata is None else dict(metadata)
        self.updates.append(HashUpdate(signal_type, normalized, copy, source_id))
        return True

    def build(self, checkpoint: str, restart: bool) -> FetchBatch:
        return FetchBatch(
            self.updates,
            checkpoint,
            self.removed,
            restart,
            dict(self.unsupported),
            self.invalid,
        )


_Deltas = Iterator[tuple[Mapping[Any, Any], FetchCheckpointBase | None]]


def _batches(
    spec: _Exchange,
    client: AnySignalExchangeAPI,
    collab: CollaborationConfigBase,
    start: FetchCheckpointBase | None,
    restart: bool,
    last_checkpoint: str | None,
) -> Iterator[FetchBatch]:
    for records, checkpoint in spec.deltas(client, start):
        batch = _BatchBuilder()
        spec.convert(records, collab, batch)
        if checkpoint is not None:
            last_checkpoint = _dump_checkpoint(checkpoint)
        yield batch.build(last_checkpoint or "null", restart)
        restart = False


def _fetch_iter(client: AnySignalExchangeAPI, start: FetchCheckpointBase | None) -> _Deltas:
    # The argument is ignored by every exchange here (threatexchange 1.2); pdq is the only
    # threatexchange signal type that is also a bank's.
    for delta in client.fetch_iter([PdqSignal], start):
        yield delta.updates, delta.checkpoint


def _stop_ncii_deltas(client: AnySignalExchangeAPI, start: FetchCheckpointBase | None) -> _Deltas:
    # StopNCIISignalExchangeAPI.fetch_iter compares the hash value, not its status, with
    # Withdrawn/Deleted, so it never reports a withdrawn hash as removed: read the raw records.
    api = cast(StopNCIISignalExchangeAPI, client).api
    start_time = api.DEFAULT_START_TIME
    if start is not None:
        start_time = cast(StopNCIICheckpoint, start).update_time
    for response in api.fetch_hashes_iter(start_timestamp=start_time):
        records = {(record.signalType, record.hashValue): record for record in response.hashRecords}
        yield records, StopNCIICheckpoint.from_stopncii_fetch(response)


# Converting records to bank hashes

_VIDEO_TAG = "media_type_video"
_FB_THREATEXCHANGE_TYPES = {
    "HASH_PDQ": "pdq",
    "HASH_MD5": "md5",
    "HASH_SHA1": "sha1",
    "HASH_SHA256": "sha256",
}
_NCMEC_IMAGE_TYPES = {"pdq": "pdq", "md5": "md5", "sha1": "sha1"}
_STOP_NCII_REMOVED = (StopNCIICaseStatus.Withdrawn, StopNCIICaseStatus.Deleted)


def _opinion_metadata(record: FetchedSignalMetadata) -> dict[str, str]:
    """The aggregate opinion of a record, and its tags; nothing for records with no opinion."""
    if type(record) is FetchedSignalMetadata or not record.get_as_opinions():
        return {}
    opinion = record.get_as_aggregate_opinion()
    metadata = {"opinion": opinion.category.name.lower()}
    if opinion.tags:
        metadata["tags"] = ",".join(sorted(opinion.tags))
    return metadata


def _simple_converter(
    type_names: Mapping[str, str],
) -> Callable[[Mapping[Any, Any], CollaborationConfigBase, _BatchBuilder], None]:
    """For exchanges whose records are keyed by (threatexchange type name, value)."""

    def convert(
        records: Mapping[tuple[str, str], FetchedSignalMetadata | None],
        collab: CollaborationConfigBase,
        batch: _BatchBuilder,
    ) -> None:
        for (type_name, value), record in records.items():
            if type_name.startswith("#") or value.startswith("#"):
                continue  # a comment line of a local file, which threatexchange passes on
            metadata = None if record is None else _opinion_metadata(record)
            batch.add(type_names.get(type_name.lower()), type_name, value, metadata)

    return convert


def _convert_fb_threatexchange(
    records: Mapping[tuple[str, str], FBThreatExchangeIndicatorRecord | None],
    collab: CollaborationConfigBase,
    batch: _BatchBuilder,
) -> None:
    for (threat_type, indicator), record in records.items():
        signal_type = _FB_THREATEXCHANGE_TYPES.get(threat_type)
        if record is None:  # a deletion has no tags to tell a video's MD5 from another's
            batch.add(signal_type, threat_type, indicator, None)
            continue
        tags = {tag for opinion in record.opinions for tag in opinion.tags}
        if _VIDEO_TAG in tags and signal_type != "pdq":
            batch.add(None, f"{threat_type} ({_VIDEO_TAG})", indicator, None)
        else:
            batch.add(signal_type, threat_type, indicator, _opinion_metadata(record))


def _convert_ncmec(
    records: Mapping[str, NCMECEntryUpdate],
    collab: CollaborationConfigBase,
    batch: _BatchBuilder,
) -> None:
    only_esp_ids = cast(NCMECCollabConfig, collab).only_esp_ids
    for key, entry in records.items():
        if only_esp_ids and entry.member_id not in only_esp_ids:
            continue
        metadata = {"ncmec_entry": entry.id, "esp_id": str(entry.member_id)}
        if entry.classification:
            metadata["classification"] = entry.classification
        added = False
        for fingerprint, value in ({} if entry.deleted else entry.fingerprints).items():
            name = fingerprint.lower()
            signal_type = _NCMEC_IMAGE_TYPES.get(name)
            if entry.entry_type != NCMECEntryType.image:
                signal_type = None
            exchange_type = f"{entry.entry_type.value}_{name}"
            added |= batch.add(signal_type, exchange_type, value, metadata, source_id=key)
        if not added:
            batch.removed.append(key)


def _convert_stop_ncii(
    records: Mapping[tuple[StopNCIISignalType, str], StopNCIIHashRecord],
    collab: CollaborationConfigBase,
    batch: _BatchBuilder,
) -> None:
    for record in records.values():
        signal_type = "pdq" if record.signalType == StopNCIISignalType.ImagePDQ else None
        metadata = None
        if record.hashStatus not in _STOP_NCII_REMOVED:
            metadata = _opinion_metadata(StopNCIISignalMetadata(record.CSPFeedbacks))
            metadata["status"] = record.hashStatus.value
        batch.add(signal_type, record.signalType.value, record.hashValue, metadata)


# Connecting

_T = TypeVar("_T")


def _connect_local_file(
    collab: CollaborationConfigBase, credentials: ExchangeCredentials
) -> AnySignalExchangeAPI:
    file_collab = cast(FileCollaborationConfig, collab)
    path = Path(file_collab.filename)
    if not path.is_file():
        problem = "is not a file" if path.exists() else "does not exist"
        raise ExchangeConfigError(f"local_file: {path} {problem}")
    if file_collab.signal_type is not None and file_collab.signal_type not in SIGNAL_TYPES:
        raise ExchangeConfigError(
            f"local_file: unknown signal_type {file_collab.signal_type!r}: "
            f"expected one of {', '.join(SIGNAL_TYPES)}"
        )
    return LocalFileSignalExchangeAPI.for_collab(file_collab)


def _connect_ncmec(
    collab: CollaborationConfigBase, credentials: ExchangeCredentials
) -> AnySignalExchangeAPI:
    user, password = _required("ncmec", credentials.ncmec)
    return NCMECSignalExchangeAPI.for_collab(
        cast(NCMECCollabConfig, collab), NCMECCredentials(user, password)
    )


def _connect_stop_ncii(
    collab: CollaborationConfigBase, credentials: ExchangeCredentials
) -> AnySignalExchangeAPI:
    fetch_function_key, subscription_key = _required("stop_ncii", credentials.stop_ncii)
    keys = StopNCIICredentials(
        fetch_function_key=fetch_function_key, subscription_key=subscription_key
    )
    return StopNCIISignalExchangeAPI.for_collab(collab, keys)


def _connect_tech_against_terrorism(
    collab: CollaborationConfigBase, credentials: ExchangeCredentials
) -> AnySignalExchangeAPI:
    username, password = _required("tech_against_terrorism", credentials.tech_against_terrorism)
    return TATSignalExchangeAPI.for_collab(
        cast(CollaborationConfigWithDefaults, collab), TATCredentials(username, password)
    )


def _connect_fb_threatexchange(
    collab: CollaborationConfigBase, credentials: ExchangeCredentials
) -> AnySignalExchangeAPI:
    token = _required("fb_threatexchange", credentials.fb_threatexchange)
    return FBThreatExchangeSignalExchangeAPI.for_collab(
        cast(FBThreatExchangeCollabConfig, collab), FBThreatExchangeCredentials(token)
    )


def _required(exchange: str, value: _T | None) -> _T:
    # Credentials always go to for_collab explicitly: without them threatexchange would look
    # for its own in TX_* environment variables and files in the home directory.
    if value is None:
        raise ExchangeConfigError(
            f"the {exchange} exchange needs credentials: set {credential_setting(exchange)} "
            f"to {_CREDENTIAL_FORMATS[exchange]!r}"
        )
    return value


@dataclass(frozen=True)
class _Exchange:
    api_cls: type[AnySignalExchangeAPI]
    connect: Callable[[CollaborationConfigBase, ExchangeCredentials], AnySignalExchangeAPI]
    convert: Callable[[Mapping[Any, Any], CollaborationConfigBase, _BatchBuilder], None]
    deltas: Callable[[AnySignalExchangeAPI, FetchCheckpointBase | None], _Deltas] = _fetch_iter
    needs_credentials: bool = True
    full_snapshot: bool = False


_EXCHANGES: dict[str, _Exchange] = {
    "local_file": _Exchange(
        LocalFileSignalExchangeAPI,
        _connect_local_file,
        _simple_converter({name: name for name in SIGNAL_TYPES}),
        needs_credentials=False,
        full_snapshot=True,  # reads the whole file every time, whatever the checkpoint
    ),
    "ncmec": _Exchange(NCMECSignalExchangeAPI, _connect_ncmec, _convert_ncmec),
    "stop_ncii": _Exchange(
        StopNCIISignalExchangeAPI, _connect_stop_ncii, _convert_stop_ncii, _stop_ncii_deltas
    ),
    "tech_against_terrorism": _Exchange(
        TATSignalExchangeAPI,
        _connect_tech_against_terrorism,
        _simple_converter({PdqSignal.get_name(): "pdq"}),
    ),
    "fb_threatexchange": _Exchange(
        FBThreatExchangeSignalExchangeAPI, _connect_fb_threatexchange, _convert_fb_threatexchange
    ),
}


def _exchange(name: str) -> _Exchange:
    spec = _EXCHANGES.get(name)
    if spec is None:
        raise ExchangeConfigError(
            f"unknown exchange {name!r}: expected one of {', '.join(_EXCHANGES)}"
        )
    return spec


def _connect(
    exchange: str, config: Mapping[str, Any], credentials: ExchangeCredentials
) -> tuple[_Exchange, AnySignalExchangeAPI, CollaborationConfigBase]:
    spec = _exchange(exchange)
    if spec.needs_credentials:
        _required(exchange, getattr(credentials, exchange))
    collab = _collab_config(exchange, spec, config)
    return spec, spec.connect(collab, credentials), collab


# Configs and checkpoints, as threatexchange's dataclasses


def _ncmec_environment(value: Any) -> Any:
    """NCMEC environments by name ("Industry") as well as by URL."""
    if isinstance(value, str) and value in NCMECEnvironment.__members__:
        return NCMECEnvironment[value]
    return value


_DACITE = dacite.Config(
    cast=[Enum, set, tuple], strict=True, type_hooks={NCMECEnvironment: _ncmec_environment}
)


def _collab_config(
    exchange: str, spec: _Exchange, config: Mapping[str, Any]
) -> CollaborationConfigBase:
    config_cls = spec.api_cls.get_config_cls()
    init_fields = {f.name for f in dataclasses.fields(config_cls) if f.init}
    data = {"name": exchange, "enabled": True, **config}
    data.pop("api", None)
    if "api" in init_fields:
        data["api"] = spec.api_cls.get_name()
    try:
        return cast(CollaborationConfigBase, dacite.from_dict(config_cls, data, config=_DACITE))
    except (dacite.DaciteError, ValueError, TypeError) as error:
        fields = ", ".join(sorted(init_fields - {"name", "api", "enabled"})) or "none"
        raise ExchangeConfigError(
            f"invalid {exchange} config: {error} (its fields: {fields})"
        ) from None


def _load_checkpoint(
    exchange: str, spec: _Exchange, text: str | None
) -> FetchCheckpointBase | None:
    if text is None:
        return None
    try:
        data = json.loads(text)
        if data is None:
            return None
        checkpoint_cls = spec.api_cls.get_checkpoint_cls()
        return cast(FetchCheckpointBase, dacite.from_dict(checkpoint_cls, data, config=_DACITE))
    except (dacite.DaciteError, ValueError, TypeError) as error:
        raise ExchangeConfigError(
            f"not a {exchange} checkpoint ({error}); fetch without one to start over"
        ) from None


def _dump_checkpoint(checkpoint: FetchCheckpointBase) -> str:
    return json.dumps(
        dataclasses.asdict(checkpoint),
        sort_keys=True,
        separators=(",", ":"),
        default=_json_default,
    )


def _json_default(value: object) -> object:
    if isinstance(value, set | frozenset):
        return sorted(value)
    if isinstance(value, Enum):
        return value.value
    raise TypeError(f"cannot store {type(value).__name__} in a checkpoint")
