from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from threatexchange.exchanges.clients.ncmec.hash_api import NCMECEntryType, NCMECEntryUpdate
from threatexchange.exchanges.clients.stopncii.api import (
    FetchHashesResponse,
    StopNCIIAPI,
    StopNCIICaseStatus,
    StopNCIICSPFeedback,
    StopNCIICSPFeedbackValue,
    StopNCIIHashRecord,
    StopNCIISignalType,
)
from threatexchange.exchanges.fetch_state import (
    FetchDelta,
    FetchedSignalMetadata,
    SignalOpinionCategory,
)
from threatexchange.exchanges.impl.fb_threatexchange_api import (
    FBThreatExchangeCheckpoint,
    FBThreatExchangeIndicatorRecord,
    FBThreatExchangeOpinion,
    FBThreatExchangeSignalExchangeAPI,
)
from threatexchange.exchanges.impl.ncmec_api import (
    NCMECCheckpoint,
    NCMECSignalExchangeAPI,
    _NCMECPagingInfo,
)
from threatexchange.exchanges.impl.stop_ncii_api import StopNCIISignalExchangeAPI
from threatexchange.exchanges.impl.techagainstterrorism_api import (
    TATCheckpoint,
    TATSignalExchangeAPI,
)

from mediaguard.banks.exchanges import (
    ExchangeConfigError,
    ExchangeCredentials,
    FetchBatch,
    HashUpdate,
    build_client,
    credential_setting,
    exchange_needs_credentials,
    fetch,
    list_exchanges,
    parse_credentials,
)
from mediaguard.signals.digests import sha1_hex_to_base36

PDQ = "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22"
PDQ2 = "0" * 63 + "1"
MD5 = "d41d8cd98f00b204e9800998ecf8427e"
SHA1 = "da39a3ee5e6b4b0d3255bfef95601890afd80709"
SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
TOKEN = "1234567890|abcdefghijklmnopqrstuvwx"

CREDENTIALS = ExchangeCredentials(
    ncmec=("esp-user", "s3cret:pass"),
    stop_ncii=("function-key", "subscription-key"),
    tech_against_terrorism=("tat-user", "tat-pass"),
    fb_threatexchange=TOKEN,
)
CONFIGS: dict[str, dict[str, Any]] = {
    "ncmec": {"environment": "Industry"},
    "stop_ncii": {},
    "tech_against_terrorism": {},
    "fb_threatexchange": {"privacy_group": 1234},
}
CLIENTS = {
    "ncmec": NCMECSignalExchangeAPI,
    "stop_ncii": StopNCIISignalExchangeAPI,
    "tech_against_terrorism": TATSignalExchangeAPI,
    "fb_threatexchange": FBThreatExchangeSignalExchangeAPI,
}


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("network access in a test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def fetch_all(exchange: str, config: dict[str, Any], **kwargs: Any) -> list[FetchBatch]:
    return list(fetch(exchange, config, **kwargs))


def values(batch: FetchBatch) -> set[tuple[str, str]]:
    return {(update.signal_type, update.value) for update in batch.updates}


# local_file


def test_local_file_typed_lines(tmp_path: Path) -> None:
    path = tmp_path / "list.txt"
    path.write_text(
        f"pdq {PDQ.upper()}\n"
        f"md5 {MD5}\n"
        f"sha1 {sha1_hex_to_base36(SHA1)}\n"
        f"sha256 {SHA256}\n"
        "# a comment\n"
        "\n"
        f"video_md5 {MD5}\n"
        "url https://example.org/\n"
        "pdq not-a-hash\n"
    )
    (batch,) = fetch_all("local_file", {"filename": str(path)})
    assert values(batch) == {("pdq", PDQ), ("md5", MD5), ("sha1", SHA1), ("sha256", SHA256)}
    assert all(update.metadata == {} and update.source_id is None for update in batch.updates)
    assert batch.unsupported == {"video_md5": 1, "url": 1}
    assert batch.invalid == 1
    assert batch.restart
    assert json.loads(batch.checkpoint) == {}

    (again,) = fetch_all("local_file", {"filename": str(path)}, checkpoint=batch.checkpoint)
    assert values(again) == values(batch)
    assert again.restart  # the whole file, every time


def test_local_file_with_signal_type(tmp_path: Path) -> None:
    path = tmp_path / "list.txt"
    path.write_text(f"# md5 of known files\n{MD5.upper()}\n{'1' * 32}\n\nnot-a-hash\n")
    (batch,) = fetch_all("local_file", {"filename": str(path), "signal_type": "md5"})
    assert values(batch) == {("md5", MD5), ("md5", "1" * 32)}
    assert (batch.invalid, batch.unsupported) == (1, {})


def test_local_file_errors(tmp_path: Path) -> None:
    missing = tmp_path / "missing.txt"
    with pytest.raises(ExchangeConfigError, match=f"local_file: {missing} does not exist"):
        fetch("local_file", {"filename": str(missing)})
    with pytest.raises(ExchangeConfigError, match="is not a file"):
        fetch("local_file", {"filename": str(tmp_path)})
    (tmp_path / "list.txt").touch()
    with pytest.raises(ExchangeConfigError, match="unknown signal_type 'video_md5'"):
        fetch("local_file", {"filename": str(tmp_path / "list.txt"), "signal_type": "video_md5"})
    with pytest.raises(ExchangeConfigError, match=r"invalid local_file config: .*filename"):
        fetch("local_file", {"file": str(tmp_path / "list.txt")})
    with pytest.raises(ExchangeConfigError, match="not a local_file checkpoint"):
        fetch("local_file", {"filename": str(tmp_path / "list.txt")}, checkpoint="nope")


# the exchange list and credentials


def test_exchanges() -> None:
    assert list_exchanges() == [
        "local_file",
        "ncmec",
        "stop_ncii",
        "tech_against_terrorism",
        "fb_threatexchange",
    ]
    assert not exchange_needs_credentials("local_file")
    assert all(exchange_needs_credentials(name) for name in CLIENTS)
    with pytest.raises(ExchangeConfigError, match="unknown exchange 'gifct': expected one of"):
        exchange_needs_credentials("gifct")
    with pytest.raises(ExchangeConfigError, match="unknown exchange 'gifct'"):
        fetch("gifct", {})


@pytest.mark.parametrize("exchange", list(CLIENTS))
def test_missing_credentials_name_the_setting(
    exchange: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # threatexchange's own places for credentials are never looked at
    for variable in ("TX_NCMEC_CREDENTIALS", "TX_STOPNCII_KEYS", "PYTX_TAT_CREDENTIALS"):
        monkeypatch.setenv(variable, "user:password")
    monkeypatch.setenv("TX_ACCESS_TOKEN", TOKEN)
    monkeypatch.setenv("HOME", str(tmp_path))
    setting = credential_setting(exchange)
    with pytest.raises(ExchangeConfigError, match=f"set {setting} to"):
        fetch(exchange, CONFIGS[exchange])
    with pytest.raises(ExchangeConfigError, match=setting):
        build_client(exchange, {}, credentials=ExchangeCredentials())


@pytest.mark.parametrize("exchange", list(CLIENTS))
def test_clients_are_built_without_network(exchange: str) -> None:
    client = build_client(exchange, CONFIGS[exchange], credentials=CREDENTIALS)
    assert isinstance(client, CLIENTS[exchange])
    batches = fetch(exchange, CONFIGS[exchange], credentials=CREDENTIALS)
    assert isinstance(batches, Iterator)


def test_credentials_reach_the_clients() -> None:
    ncmec = build_client("ncmec", CONFIGS["ncmec"], credentials=CREDENTIALS)
    assert isinstance(ncmec, NCMECSignalExchangeAPI)
    assert (ncmec._username, ncmec._password) == ("esp-user", "s3cret:pass")
    assert ncmec.collab.environment.name == "Industry"
    stop_ncii = build_client("stop_ncii", {}, credentials=CREDENTIALS)
    assert isinstance(stop_ncii, StopNCIISignalExchangeAPI)
    assert stop_ncii.api._subscription_key == "subscription-key"
    tat = build_client("tech_against_terrorism", {}, credentials=CREDENTIALS)
    assert isinstance(tat, TATSignalExchangeAPI)
    assert (tat.username, tat.password) == ("tat-user", "tat-pass")
    te = build_client("fb_threatexchange", CONFIGS["fb_threatexchange"], credentials=CREDENTIALS)
    assert isinstance(te, FBThreatExchangeSignalExchangeAPI)
    assert (te.client.app_id, te.collab.privacy_group) == (1234567890, 1234)


def test_exchange_configs_are_checked() -> None:
    with pytest.raises(ExchangeConfigError, match=r"invalid ncmec config: .*environment"):
        fetch("ncmec", {}, credentials=CREDENTIALS)
    with pytest.raises(ExchangeConfigError, match="invalid ncmec config"):
        fetch("ncmec", {"environment": "Moon"}, credentials=CREDENTIALS)
    with pytest.raises(ExchangeConfigError, match="invalid fb_threatexchange config"):
        fetch("fb_threatexchange", {"privacy_group": 1, "tags": []}, credentials=CREDENTIALS)
    with pytest.raises(ExchangeConfigError, match="not a ncmec checkpoint"):
        fetch("ncmec", CONFIGS["ncmec"], credentials=CREDENTIALS, checkpoint="{}")


def test_parse_credentials() -> None:
    assert parse_credentials("ncmec", " user:pa:ss \n") == ("user", "pa:ss")
    assert parse_credentials("stop_ncii", "fn:sub") == ("fn", "sub")
    assert parse_credentials("fb_threatexchange", f" {TOKEN}\n") == TOKEN
    with pytest.raises(ExchangeConfigError) as caught:
        parse_credentials("tech_against_terrorism", "only-a-secret")
    assert str(caught.value) == (
        "MEDIAGUARD_TECH_AGAINST_TERRORISM_CREDENTIALS must be 'username:password'"
    )
    with pytest.raises(ExchangeConfigError, match="MEDIAGUARD_FB_THREATEXCHANGE_CREDENTIALS"):
        parse_credentials("fb_threatexchange", "not-a-token")
    with pytest.raises(ExchangeConfigError, match="no credentials for exchange 'local_file'"):
        parse_credentials("local_file", "a:b")


def test_credentials_from_settings_keep_secrets_out_of_repr() -> None:
    credentials = ExchangeCredentials.from_settings(
        {"ncmec": "user:hunter2", "stop_ncii": "", "fb_threatexchange": None}
    )
    assert credentials == ExchangeCredentials(ncmec=("user", "hunter2"))
    assert "hunter2" not in repr(credentials)
    assert repr(credentials) == "ExchangeCredentials(configured=['ncmec'])"


# the other exchanges, with their network calls replaced


def test_ncmec_entries(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[NCMECCheckpoint | None] = []
    checkpoint = NCMECCheckpoint(100, _NCMECPagingInfo("https://ncmec.invalid/next", 200))

    def fetch_iter(
        self: NCMECSignalExchangeAPI, types: object, start: NCMECCheckpoint | None
    ) -> Iterator[FetchDelta[str, NCMECEntryUpdate, NCMECCheckpoint]]:
        seen.append(start)
        yield FetchDelta(
            {
                "42-1": entry("1", 42, {"MD5": MD5.upper(), "sha1": SHA1, "pdq": PDQ, "pdna": "x"}),
                "42-2": entry("2", 42, {"md5": MD5}, NCMECEntryType.video),
                "43-3": entry("3", 43, {}, deleted=True),
                "43-4": entry("4", 43, {"pdq": "bad"}),
            },
            checkpoint,
        )

    monkeypatch.setattr(NCMECSignalExchangeAPI, "fetch_iter", fetch_iter)
    (batch,) = fetch_all("ncmec", CONFIGS["ncmec"], credentials=CREDENTIALS)
    metadata = {"ncmec_entry": "1", "esp_id": "42", "classification": "A1"}
    assert batch.updates == [
        HashUpdate("md5", MD5, metadata, "42-1"),
        HashUpdate("sha1", SHA1, metadata, "42-1"),
        HashUpdate("pdq", PDQ, metadata, "42-1"),
    ]
    assert batch.removed_source_ids == ["42-2", "43-3", "43-4"]
    assert batch.unsupported == {"image_pdna": 1, "video_md5": 1}
    assert (batch.invalid, batch.restart, seen) == (1, True, [None])

    (resumed,) = fetch_all(
        "ncmec", CONFIGS["ncmec"], credentials=CREDENTIALS, checkpoint=batch.checkpoint
    )
    assert seen[1] == checkpoint
    assert not resumed.restart

    only = {**CONFIGS["ncmec"], "only_esp_ids": [43]}
    (filtered,) = fetch_all("ncmec", only, credentials=CREDENTIALS)
    assert (filtered.updates, filtered.removed_source_ids) == ([], ["43-3", "43-4"])


def entry(
    entry_id: str,
    esp_id: int,
    fingerprints: dict[str, str],
    entry_type: NCMECEntryType = NCMECEntryType.image,
    deleted: bool = False,
) -> NCMECEntryUpdate:
    return NCMECEntryUpdate(
        id=entry_id,
        member_id=esp_id,
        entry_type=entry_type,
        deleted=deleted,
        classification=None if deleted else "A1",
        fingerprints=fingerprints,
        feedback={},
    )


def test_stop_ncii_records_and_withdrawn_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    starts: list[int] = []

    def fetch_hashes_iter(self: StopNCIIAPI, start_timestamp: int) -> Iterator[FetchHashesResponse]:
        starts.append(start_timestamp)
        yield FetchHashesResponse(
            count=3,
            nextPageToken=None,
            nextSetTimestamp=1_700_000_000,
            hasMoreRecords=False,
            hashRecords=[
                ncii_record(PDQ, StopNCIICaseStatus.Active),
                ncii_record(PDQ2, StopNCIICaseStatus.Withdrawn),
                ncii_record(MD5, StopNCIICaseStatus.Active, StopNCIISignalType.VideoMD5),
            ],
        )

    monkeypatch.setattr(StopNCIIAPI, "fetch_hashes_iter", fetch_hashes_iter)
    (batch,) = fetch_all("stop_ncii", {}, credentials=CREDENTIALS)
    assert batch.updates == [
        HashUpdate("pdq", PDQ, {"opinion": "positive_class", "tags": "nsfw", "status": "Active"}),
        HashUpdate("pdq", PDQ2, None),
    ]
    assert batch.unsupported == {"VideoMD5": 1}
    assert json.loads(batch.checkpoint)["update_time"] == 1_700_000_000

    fetch_all("stop_ncii", {}, credentials=CREDENTIALS, checkpoint=batch.checkpoint)
    expired = json.dumps({"update_time": 1_600_000_000, "last_fetch_time": 0})
    (again,) = fetch_all("stop_ncii", {}, credentials=CREDENTIALS, checkpoint=expired)
    assert starts == [StopNCIIAPI.DEFAULT_START_TIME, 1_700_000_000, StopNCIIAPI.DEFAULT_START_TIME]
    assert again.restart


def ncii_record(
    value: str,
    status: StopNCIICaseStatus,
    signal_type: StopNCIISignalType = StopNCIISignalType.ImagePDQ,
) -> StopNCIIHashRecord:
    feedback = StopNCIICSPFeedback(StopNCIICSPFeedbackValue.Blocked, {"nsfw"}, "example")
    return StopNCIIHashRecord(1, signal_type, value, status, {}, [feedback])


def test_tech_against_terrorism_keeps_the_last_checkpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    def fetch_iter(
        self: TATSignalExchangeAPI, types: object, start: TATCheckpoint | None
    ) -> Iterator[FetchDelta[tuple[str, str], FetchedSignalMetadata, TATCheckpoint]]:
        yield FetchDelta(
            {("pdq", PDQ): FetchedSignalMetadata(), ("video_md5", MD5): FetchedSignalMetadata()},
            TATCheckpoint("1700000000.5,abc"),
        )
        # threatexchange passes on a None checkpoint when a page has none
        yield FetchDelta({("pdq", PDQ2): None}, None)  # type: ignore[arg-type]

    monkeypatch.setattr(TATSignalExchangeAPI, "fetch_iter", fetch_iter)
    first, second = fetch_all("tech_against_terrorism", {}, credentials=CREDENTIALS)
    assert first.updates == [HashUpdate("pdq", PDQ, {})]
    assert first.unsupported == {"video_md5": 1}
    assert second.updates == [HashUpdate("pdq", PDQ2, None)]
    assert second.checkpoint == first.checkpoint == '{"checkpoint":"1700000000.5,abc"}'
    assert (first.restart, second.restart) == (True, False)


def test_fb_threatexchange_indicators(monkeypatch: pytest.MonkeyPatch) -> None:
    def fetch_iter(
        self: FBThreatExchangeSignalExchangeAPI,
        types: object,
        start: FBThreatExchangeCheckpoint | None,
    ) -> Iterator[Any]:
        yield FetchDelta(
            {
                ("HASH_PDQ", PDQ): indicator({"csam"}),
                ("HASH_MD5", MD5): indicator({"media_type_video"}),
                ("HASH_SHA256", SHA256.upper()): indicator(
                    set(), SignalOpinionCategory.NEGATIVE_CLASS
                ),
                ("URI", "https://example.org/"): indicator(set()),
                ("HASH_PDQ", PDQ2): None,
            },
            FBThreatExchangeCheckpoint(update_time=123),
        )

    monkeypatch.setattr(FBThreatExchangeSignalExchangeAPI, "fetch_iter", fetch_iter)
    (batch,) = fetch_all("fb_threatexchange", CONFIGS["fb_threatexchange"], credentials=CREDENTIALS)
    assert batch.updates == [
        HashUpdate("pdq", PDQ, {"opinion": "positive_class", "tags": "csam"}),
        HashUpdate("sha256", SHA256, {"opinion": "negative_class"}),
        HashUpdate("pdq", PDQ2, None),
    ]
    assert batch.unsupported == {"HASH_MD5 (media_type_video)": 1, "URI": 1}
    assert json.loads(batch.checkpoint)["update_time"] == 123


def indicator(
    tags: set[str], category: SignalOpinionCategory = SignalOpinionCategory.POSITIVE_CLASS
) -> FBThreatExchangeIndicatorRecord:
    return FBThreatExchangeIndicatorRecord([FBThreatExchangeOpinion(False, category, tags, 1, 2)])
