"""The tolerant Shippo model: shapes, quirks, identities."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from domain.normalization import TRANSACTION_STATUSES
from domain.payload import (
    LabelUpdate,
    Location,
    PayloadError,
    TrackUpdate,
    Webhook,
    carrier_from_url,
    is_acted_on,
    parse_event,
    parse_timestamp,
    parse_webhook,
    webhook_identity,
)
from tests.unit.test_domain_fixtures import load_body, load_raw


def dumps(body: Any) -> str:
    return json.dumps(body)


def track_event(body: dict[str, Any]) -> TrackUpdate:
    event = parse_event(parse_webhook(dumps(body)))
    assert isinstance(event, TrackUpdate)
    return event


def label_event(body: dict[str, Any]) -> LabelUpdate:
    event = parse_event(parse_webhook(dumps(body)))
    assert isinstance(event, LabelUpdate)
    return event


# --------------------------------------------------------------------------- shape errors

SHAPE_ERRORS = [
    ("", "body is not valid JSON: Expecting value at line 1 column 1"),
    ("{nope", "body is not valid JSON"),
    (b"\xff\xfe\xfa", "body is not valid JSON"),
    ("[1, 2]", "body must be a JSON object"),
    ('"text"', "body must be a JSON object"),
    ('{"data": {}}', "missing field 'event'"),
    ('{"event": "", "data": {}}', "'event' must be a non-empty string"),
    ('{"event": 7, "data": {}}', "'event' must be a non-empty string"),
    ('{"event": "track_updated"}', "missing field 'data'"),
    ('{"event": "track_updated", "data": "x"}', "'data' of track_updated must be an object"),
    (
        '{"event": "track_updated", "data": {"carrier": "usps", "tracking_status": {}}}',
        "'data.tracking_number' is missing",
    ),
    (
        '{"event": "track_updated", "data": {"tracking_number": "1", "tracking_status": {}}}',
        "'data.carrier' is missing",
    ),
    (
        '{"event": "track_updated", "data": {"carrier": 5, "tracking_number": "1", "tracking_status": {}}}',
        "'data.carrier' must be a string",
    ),
    (
        '{"event": "track_updated", "data": {"carrier": "usps", "tracking_number": "1"}}',
        "'data.tracking_status' is missing",
    ),
    (
        '{"event": "track_updated", "data": {"carrier": "usps", "tracking_number": "1", "tracking_status": null}}',
        "'data.tracking_status' must be an object",
    ),
    ('{"event": "transaction_created", "data": null}', "'data' of transaction_created must be an object"),
    ('{"event": "transaction_updated", "data": {"status": "SUCCESS"}}', "'data.object_id' is missing"),
    ('{"event": "transaction_updated", "data": {"object_id": "a"}}', "'data.status' is missing"),
]


@pytest.mark.parametrize(("raw", "message"), SHAPE_ERRORS)
def test_a_malformed_body_is_rejected_with_a_message_naming_the_problem(
    raw: str | bytes, message: str
) -> None:
    with pytest.raises(PayloadError) as caught:
        parse_webhook(raw)
    assert str(caught.value).startswith(message)


def test_a_deeply_nested_body_is_rejected_not_crashed_on() -> None:
    with pytest.raises(PayloadError, match="nested deeper than 64 levels"):
        parse_webhook("[" * 100_000 + "]" * 100_000)


def test_unknown_keys_are_accepted_everywhere() -> None:
    body = load_body("track_updated_transit.json")
    body["surprise"] = {"a": 1}
    body["data"]["surprise"] = [1]
    body["data"]["tracking_status"]["surprise"] = None
    assert track_event(body).tracking_number == body["data"]["tracking_number"]


@pytest.mark.parametrize("event", ["batch_created", "batch_purchased", "something_new"])
def test_events_not_acted_on_are_valid_and_parse_to_nothing(event: str) -> None:
    webhook = parse_webhook(dumps({"event": event, "test": False, "data": "batch 5ef6 created"}))
    assert webhook.data == "batch 5ef6 created"
    assert not is_acted_on(webhook)
    assert parse_event(webhook) is None


@pytest.mark.parametrize("event", ["transaction_created", "transaction_updated", "track_updated"])
def test_transactions_and_tracks_are_acted_on(event: str) -> None:
    assert is_acted_on(Webhook(event=event, test=False, data={}, metadata=None))


def test_batch_data_may_be_a_string() -> None:
    webhook = parse_webhook(load_raw("batch_created.json"))
    assert webhook.event == "batch_created"
    assert isinstance(webhook.data, str)


def test_top_level_metadata_is_kept_on_the_webhook() -> None:
    webhook = parse_webhook(load_raw("track_updated_test_mode.json"))
    assert webhook.metadata == "Shippo test webhook"
    assert webhook.test is True


# --------------------------------------------------------------------------- tracks


def test_a_track_update_exposes_latest_scan_history_and_eta() -> None:
    event = track_event(load_body("track_updated_delivered.json"))
    assert event.carrier == "usps"
    assert event.transaction_id == "4bf5e5577e50c892821c556fe01a4da6"
    assert event.eta == datetime(2026, 3, 6, 15, 4, tzinfo=UTC)
    assert event.latest.status == "DELIVERED"
    assert event.latest.substatus_code == "delivered"
    assert event.latest.action_required is False
    assert event.latest.location == Location("Spotsylvania", "VA", "22551", "US")
    assert [s.substatus_code for s in event.history][0] == "information_received"
    assert event.history[-1].object_id == event.latest.object_id
    assert len(event.scans()) == len(event.history)


def test_test_mode_quirks_null_substatus_null_updated_naive_times_null_transaction() -> None:
    event = track_event(load_body("track_updated_test_mode.json"))
    assert event.test is True
    assert event.transaction_id is None
    assert event.eta is None
    assert event.metadata is None  # top-level metadata is not the track's metadata
    assert event.latest.substatus_code is None
    assert event.latest.action_required is None
    assert event.latest.status_date == datetime(2026, 3, 2, 18, 4, tzinfo=UTC)
    assert event.history[0].status == "UNKNOWN"


def test_a_null_status_date_falls_back_on_object_created() -> None:
    body = load_body("track_updated_transit.json")
    body["data"]["tracking_status"]["status_date"] = None
    body["data"]["tracking_status"]["object_created"] = "2026-03-03T10:00:00"
    assert track_event(body).latest.status_date == datetime(2026, 3, 3, 10, tzinfo=UTC)


def test_a_scan_without_any_time_is_a_payload_error() -> None:
    body = load_body("track_updated_transit.json")
    body["data"]["tracking_status"]["status_date"] = None
    body["data"]["tracking_status"]["object_created"] = None
    with pytest.raises(PayloadError, match=r"'data.tracking_status.status_date' is missing"):
        track_event(body)


def test_a_garbage_status_date_is_a_payload_error_naming_the_field() -> None:
    body = load_body("track_updated_transit.json")
    body["data"]["tracking_status"]["status_date"] = "yesterday"
    with pytest.raises(
        PayloadError, match=r"'data.tracking_status.status_date' is not an ISO 8601 timestamp"
    ):
        track_event(body)


def test_a_malformed_history_entry_is_skipped_not_fatal() -> None:
    body = load_body("track_updated_delivered.json")
    good = len(body["data"]["tracking_history"])
    body["data"]["tracking_history"].insert(1, "garbage")
    body["data"]["tracking_history"].insert(2, {"status": "TRANSIT", "status_date": None})
    assert len(track_event(body).history) == good


def test_a_garbage_eta_reads_as_unknown() -> None:
    body = load_body("track_updated_transit.json")
    body["data"]["eta"] = "soon"
    assert track_event(body).eta is None


def test_a_scan_without_object_id_gets_a_content_id() -> None:
    body = load_body("track_updated_transit.json")
    del body["data"]["tracking_status"]["object_id"]
    first = track_event(body).latest.object_id
    assert first.startswith("sha256:")
    assert track_event(copy.deepcopy(body)).latest.object_id == first


def test_carrier_is_lowercased_and_status_uppercased() -> None:
    body = load_body("track_updated_transit.json")
    body["data"]["carrier"] = "USPS"
    body["data"]["tracking_status"]["status"] = "transit"
    event = track_event(body)
    assert (event.carrier, event.latest.status) == ("usps", "TRANSIT")


def test_a_missing_scan_status_reads_as_unknown() -> None:
    body = load_body("track_updated_transit.json")
    del body["data"]["tracking_status"]["status"]
    assert track_event(body).latest.status == "UNKNOWN"


# --------------------------------------------------------------------------- transactions


@pytest.mark.parametrize("status", TRANSACTION_STATUSES)
def test_every_transaction_status_parses(status: str) -> None:
    body = load_body("transaction_created.json")
    body["data"]["status"] = status
    assert label_event(body).status == status


def test_a_label_with_a_rate_id_infers_the_carrier_from_the_tracking_page() -> None:
    event = label_event(load_body("transaction_created.json"))
    assert event.carrier == "usps"
    assert event.tracking_number == "9205590164917312751089"
    assert event.metadata == "Order 1001"
    assert event.label_url is not None and event.label_url.startswith("https://deliver.goshippo.com/")
    assert event.event_time == datetime(2026, 3, 2, 15, 4, tzinfo=UTC)


def test_an_instalabel_rate_object_names_the_carrier() -> None:
    event = label_event(load_body("transaction_created_instalabel.json"))
    assert event.carrier == "dhl_express"
    assert event.tracking_number == "4157349920"


def test_a_failed_label_keeps_the_carrier_messages_and_blanks_read_as_none() -> None:
    event = label_event(load_body("transaction_created_error.json"))
    assert event.status == "ERROR"
    assert event.messages == ("The address as submitted could not be found.",)
    assert (event.tracking_number, event.tracking_url_provider, event.label_url) == (None, None, None)


def test_label_metadata_falls_back_on_the_top_level_metadata() -> None:
    body = load_body("transaction_created.json")
    body["data"]["metadata"] = ""
    body["metadata"] = "Order 77"
    assert label_event(body).metadata == "Order 77"


def test_a_null_object_updated_falls_back_on_object_created_for_event_time() -> None:
    body = load_body("transaction_created.json")
    body["data"]["object_updated"] = None
    event = label_event(body)
    assert event.updated is None
    assert event.event_time == event.created


@pytest.mark.parametrize(
    ("url", "carrier"),
    [
        ("https://tools.usps.com/go/TrackConfirmAction?tLabels=1", "usps"),
        ("https://www.ups.com/track?tracknum=1", "ups"),
        ("https://www.fedex.com/fedextrack/?trknbr=1", "fedex"),
        ("http://www.dhl-usa.com/content/us/en/express/tracking.shtml?AWB=1", "dhl_express"),
        ("https://www.canadapost-postescanada.ca/track-reperage/en#/search?searchFor=1", "canada_post"),
        ("https://www.royalmail.com/track-your-item#/tracking-results/1", "royal_mail"),
        ("https://www.purolator.com/en/shipping/tracker?pin=1", "purolator"),
        ("https://example.com/track/1", None),
        ("https://groups.com/x", None),
        ("", None),
        (None, None),
    ],
)
def test_carrier_is_inferred_from_the_tracking_page_host(url: str | None, carrier: str | None) -> None:
    assert carrier_from_url(url) == carrier


def test_a_transaction_without_rate_or_url_has_no_carrier() -> None:
    body = load_body("transaction_created.json")
    body["data"]["rate"] = None
    body["data"]["tracking_url_provider"] = None
    assert label_event(body).carrier is None


# --------------------------------------------------------------------------- timestamps


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-03-04T21:41:00.000Z", datetime(2026, 3, 4, 21, 41, tzinfo=UTC)),
        ("2026-03-04T21:41:00Z", datetime(2026, 3, 4, 21, 41, tzinfo=UTC)),
        ("2026-03-04T21:41:00.000", datetime(2026, 3, 4, 21, 41, tzinfo=UTC)),
        ("2026-03-04T21:41:00", datetime(2026, 3, 4, 21, 41, tzinfo=UTC)),
        ("2026-03-04T23:41:00+02:00", datetime(2026, 3, 4, 21, 41, tzinfo=UTC)),
        ("2026-03-04T21:41:00.123456Z", datetime(2026, 3, 4, 21, 41, 0, 123456, tzinfo=UTC)),
        (None, None),
        ("", None),
    ],
)
def test_timestamps_with_or_without_zone_or_millis_become_utc(
    text: str | None, expected: datetime | None
) -> None:
    parsed = parse_timestamp(text)
    assert parsed == expected
    if parsed is not None:
        assert parsed.utcoffset() == timedelta(0)


def test_an_aware_datetime_is_converted_to_utc() -> None:
    paris = timezone(timedelta(hours=1))
    assert parse_timestamp(datetime(2026, 1, 1, 1, tzinfo=paris)) == datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("value", ["tomorrow", 12, "2026-13-01T00:00:00Z"])
def test_garbage_timestamps_are_payload_errors(value: object) -> None:
    with pytest.raises(PayloadError):
        parse_timestamp(value)


# --------------------------------------------------------------------------- identity


def test_a_track_identity_is_carrier_number_and_scan_id() -> None:
    webhook = parse_webhook(load_raw("track_updated_delivered.json"))
    assert webhook_identity(webhook) == "track:usps:9205590164917312751089:2af20c802ae0fd2b1bd66ed0cc152d98"


def test_a_transaction_identity_is_id_status_and_update_time() -> None:
    webhook = parse_webhook(load_raw("transaction_created.json"))
    assert (
        webhook_identity(webhook) == "txn:4bf5e5577e50c892821c556fe01a4da6:SUCCESS:2026-03-02T15:04:00.000Z"
    )


def test_a_transaction_identity_falls_back_on_object_created() -> None:
    body = load_body("transaction_created.json")
    body["data"]["object_updated"] = None
    body["data"]["object_created"] = "2026-03-01T00:00:00"
    assert webhook_identity(parse_webhook(dumps(body))).endswith(":SUCCESS:2026-03-01T00:00:00")


def test_identity_ignores_key_order_and_whitespace() -> None:
    body = load_body("batch_created.json")
    reordered = json.dumps(dict(reversed(list(body.items()))), indent=4)
    assert webhook_identity(parse_webhook(dumps(body))) == webhook_identity(parse_webhook(reordered))
    assert webhook_identity(parse_webhook(dumps(body))).startswith("batch_created:")


def test_a_track_without_scan_id_gets_a_content_hash_identity() -> None:
    body = load_body("track_updated_transit.json")
    del body["data"]["tracking_status"]["object_id"]
    identity = webhook_identity(parse_webhook(dumps(body)))
    assert identity.startswith("track:usps:") and len(identity.rsplit(":", 1)[1]) == 64


def test_a_long_identity_is_hashed_to_a_compact_string() -> None:
    body = load_body("track_updated_transit.json")
    body["data"]["carrier"] = "c" * 64
    body["data"]["tracking_number"] = "X" * 128
    body["data"]["tracking_status"]["object_id"] = "s" * 64
    identity = webhook_identity(parse_webhook(dumps(body)))
    assert len(identity) <= 200
    assert identity.startswith("track:")


def test_a_tracking_number_longer_than_its_column_is_refused_by_name() -> None:
    body = load_body("track_updated_transit.json")
    body["data"]["tracking_number"] = "X" * 129
    with pytest.raises(PayloadError, match=r"'data.tracking_number' is longer than 128 characters"):
        parse_webhook(dumps(body))


def test_a_different_update_of_the_same_transaction_has_a_different_identity() -> None:
    body = load_body("transaction_created.json")
    first = webhook_identity(parse_webhook(dumps(body)))
    body["data"]["status"] = "REFUNDED"
    assert webhook_identity(parse_webhook(dumps(body))) != first


# --------------------------------------------------------------------------- location


@pytest.mark.parametrize(
    ("location", "text"),
    [
        (Location("Las Vegas", "NV", "89101", "US"), "Las Vegas, NV"),
        (Location("Paris", "", "75001", "FR"), "Paris, FR"),
        (Location("", "", "", ""), ""),
        (Location("", "NV", "", "US"), "NV"),
    ],
)
def test_a_location_label_reads_like_an_address_line(location: Location, text: str) -> None:
    assert location.label() == text
