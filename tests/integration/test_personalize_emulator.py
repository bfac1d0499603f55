"""boto3 against the Personalize emulator, over real HTTP, in a subprocess.

Run with ``pytest tests/integration/test_personalize_emulator.py -p tests.emulator_fixture``.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from botocore.exceptions import ClientError

from devstack.personalize.client import (
    EmulatorError,
    EmulatorProcess,
    error_fault,
    latency_fault,
    outage_fault,
    run_emulator,
)
from tests.emulator_fixture import make_events_client

if TYPE_CHECKING:
    from mypy_boto3_personalize_events import PersonalizeEventsClient

TRACKER = "tracker-under-test"
ACCOUNT = "000000000000"
ITEMS_ARN = f"arn:aws:personalize:us-east-1:{ACCOUNT}:dataset/{TRACKER}/ITEMS"
USERS_ARN = f"arn:aws:personalize:us-east-1:{ACCOUNT}:dataset/{TRACKER}/USERS"


def an_event(number: int = 0, **overrides: Any) -> dict[str, Any]:
    """A valid event; ``overrides`` replace members (a value of ``...`` removes one)."""
    event: dict[str, Any] = {
        "eventId": f"event-{number}",
        "eventType": "play",
        "sentAt": 1_717_000_000 + number,
        "itemId": f"game-{number % 7}",
        "eventValue": 2.5,
        "properties": json.dumps({"platform": "ios", "lobbySection": "popular"}),
        "recommendationId": "rec-1",
        "impression": ["game-1", "game-2", "game-3"],
    }
    for key, value in overrides.items():
        if value is ...:
            event.pop(key, None)
        else:
            event[key] = value
    return event


def a_request(events: list[dict[str, Any]] | None = None, **overrides: Any) -> dict[str, Any]:
    """A valid PutEvents request; ``overrides`` replace members (``...`` removes one)."""
    request: dict[str, Any] = {
        "trackingId": TRACKER,
        "userId": "player-1",
        "sessionId": "session-1",
        "eventList": events if events is not None else [an_event(0)],
    }
    for key, value in overrides.items():
        if value is ...:
            request.pop(key, None)
        else:
            request[key] = value
    return request


def error_of(call: Callable[[], object]) -> ClientError:
    """Run ``call``; return the ClientError it raised (fail if none)."""
    with pytest.raises(ClientError) as caught:
        call()
    return caught.value


def post_raw(emulator: EmulatorProcess, path: str, body: object) -> tuple[int, dict[str, str], dict[str, Any]]:
    """POST a JSON body without any SDK: (status, lower-cased headers, decoded body)."""
    request = urllib.request.Request(
        emulator.url + path,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, headers, payload = response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        status, headers, payload = exc.code, dict(exc.headers), exc.read()
    return status, {key.lower(): value for key, value in headers.items()}, json.loads(payload or b"{}")


@pytest.fixture
def emulator(personalize_emulator: EmulatorProcess) -> EmulatorProcess:
    """The reset emulator with ``TRACKER`` (unlimited quota)."""
    personalize_emulator.create_tracker(TRACKER, quota_per_second=None)
    return personalize_emulator


@pytest.fixture
def events_client(emulator: EmulatorProcess) -> PersonalizeEventsClient:
    """Retries disabled, botocore's own validation on."""
    return make_events_client(emulator)


@pytest.fixture
def unchecked_client(emulator: EmulatorProcess) -> PersonalizeEventsClient:
    """Retries disabled and botocore's validation off: the server alone judges the request."""
    return make_events_client(emulator, validate=False)


# --------------------------------------------------------------------------------------- accepted


def test_accepted_events_appear_in_inspection(
    emulator: EmulatorProcess, events_client: PersonalizeEventsClient
) -> None:
    before = time.time()
    events = [an_event(n) for n in range(3)]
    events[2]["metricAttribution"] = {"eventAttributionSource": "lobby"}
    response = events_client.put_events(**a_request(events))
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert response["ResponseMetadata"]["RequestId"]

    listed = emulator.events(tracking_id=TRACKER)
    assert [event["eventId"] for event in listed] == ["event-0", "event-1", "event-2"]
    first = listed[0]
    assert first["trackingId"] == TRACKER
    assert first["userId"] == "player-1"
    assert first["sessionId"] == "session-1"
    assert first["eventType"] == "play"
    assert first["sentAt"] == 1_717_000_000
    assert first["itemId"] == "game-0"
    assert first["eventValue"] == 2.5
    assert first["recommendationId"] == "rec-1"
    assert first["impression"] == ["game-1", "game-2", "game-3"]
    assert json.loads(first["properties"]) == {"platform": "ios", "lobbySection": "popular"}
    assert before - 1 <= first["receivedAt"] <= time.time() + 1
    assert listed[2]["metricAttribution"] == {"eventAttributionSource": "lobby"}
    assert [event["seq"] for event in listed] == sorted(event["seq"] for event in listed)


def test_minimal_event_and_anonymous_user_are_accepted(
    emulator: EmulatorProcess, events_client: PersonalizeEventsClient
) -> None:
    events_client.put_events(
        trackingId=TRACKER, sessionId="s", eventList=[{"eventType": "click", "sentAt": 1_717_000_000.25}]
    )
    (event,) = emulator.events()
    assert event["userId"] is None
    assert event["eventId"] is None
    assert event["sentAt"] == 1_717_000_000.25
    assert emulator.stats()["eventsWithoutEventId"] == 1


def test_duplicates_are_kept_and_counted(emulator: EmulatorProcess, events_client: PersonalizeEventsClient) -> None:
    events_client.put_events(**a_request([an_event(1), an_event(2)]))
    events_client.put_events(**a_request([an_event(2), an_event(3)]))
    ids = emulator.event_ids(TRACKER)
    assert Counter(ids) == {"event-1": 1, "event-2": 2, "event-3": 1}
    stats = emulator.stats()
    assert stats["eventsAccepted"] == 4
    assert stats["distinctEventIds"] == 3
    assert stats["eventsByTracker"] == {TRACKER: 4}
    assert stats["calls"]["PutEvents"]["ok"] == 2


def test_endpoint_from_environment_variable(personalize_emulator_env: EmulatorProcess) -> None:
    personalize_emulator_env.create_tracker(TRACKER)
    client = boto3.client("personalize-events")
    client.put_events(**a_request())
    assert personalize_emulator_env.event_ids() == ["event-0"]


def test_listing_filters_pages_and_projects(emulator: EmulatorProcess, events_client: PersonalizeEventsClient) -> None:
    emulator.create_tracker("other-tracker", quota_per_second=None)
    for batch in range(5):
        events_client.put_events(**a_request([an_event(batch * 10 + n) for n in range(10)]))
        events_client.put_events(**a_request([an_event(900 + batch)], trackingId="other-tracker"))
    assert len(emulator.events()) == 55
    mine = emulator.events(TRACKER)
    assert len(mine) == 50
    assert {event["trackingId"] for event in emulator.events("other-tracker")} == {"other-tracker"}

    page = emulator.events(TRACKER, limit=20)
    assert [event["eventId"] for event in page] == [event["eventId"] for event in mine[:20]]
    rest = emulator.events(TRACKER, after=page[-1]["seq"])
    assert [event["eventId"] for event in page + rest] == [event["eventId"] for event in mine]
    assert emulator.events(TRACKER, since=mine[-1]["receivedAt"])[-1]["eventId"] == mine[-1]["eventId"]
    assert emulator.events(since=time.time() + 60) == []

    projected = emulator.events(TRACKER, fields=["eventId", "userId"], limit=2)
    assert projected == [
        {"eventId": "event-0", "userId": "player-1"},
        {"eventId": "event-1", "userId": "player-1"},
    ]
    full = emulator.request("GET", "/_emulator/events", query={"trackingId": TRACKER, "limit": 3})
    assert full["count"] == 3
    assert full["truncated"] is True
    assert full["lastSeq"] == full["events"][-1]["seq"]

    emulator.clear_events()
    assert emulator.events() == []
    assert emulator.stats()["distinctEventIds"] == 0


def test_unknown_paths_answer_aws_style_404(emulator: EmulatorProcess) -> None:
    status, headers, body = post_raw(emulator, "/no-such-operation", {})
    assert status == 404
    assert headers["x-amzn-errortype"].startswith("UnknownOperationException")
    assert "message" in body


# ----------------------------------------------------------------------------------------- limits

LIMIT_CASES: dict[str, tuple[dict[str, Any], str]] = {
    "11 events": (a_request([an_event(n) for n in range(11)]), "eventList: must hold 1..10"),
    "0 events": (a_request([]), "eventList: must hold 1..10"),
    "missing trackingId": (a_request(trackingId=...), "trackingId: is required"),
    "missing sessionId": (a_request(sessionId=...), "sessionId: is required"),
    "empty sessionId": (a_request(sessionId=""), "sessionId: must have length 1..256"),
    "sessionId 257 chars": (a_request(sessionId="s" * 257), "sessionId: must have length 1..256"),
    "userId 257 chars": (a_request(userId="u" * 257), "userId: must have length 1..256"),
    "empty userId": (a_request(userId=""), "userId: must have length 1..256"),
    "missing eventType": (a_request([an_event(eventType=...)]), "eventList[0].eventType: is required"),
    "eventType 257 chars": (a_request([an_event(eventType="t" * 257)]), "eventList[0].eventType"),
    "missing sentAt": (a_request([an_event(sentAt=...)]), "eventList[0].sentAt: is required"),
    "eventId 257 chars": (a_request([an_event(eventId="e" * 257)]), "eventList[0].eventId"),
    "itemId 257 chars": (a_request([an_event(itemId="i" * 257)]), "eventList[0].itemId"),
    "recommendationId 41 chars": (
        a_request([an_event(recommendationId="r" * 41)]),
        "eventList[0].recommendationId: must have length 1..40, got 41",
    ),
    "impression 26 ids": (
        a_request([an_event(impression=[f"g{n}" for n in range(26)])]),
        "eventList[0].impression: must hold 1..25 item ids, got 26",
    ),
    "impression empty": (a_request([an_event(impression=[])]), "eventList[0].impression"),
    "impression id 257 chars": (
        a_request([an_event(impression=["ok", "g" * 257])]),
        "eventList[0].impression[1]",
    ),
    "properties 1025 chars": (
        a_request([an_event(properties=json.dumps({"padding": "x" * 1010}))]),
        "eventList[0].properties: must have length 1..1024, got 1025",
    ),
    "properties not a string": (
        a_request([an_event(properties={"platform": "ios"})]),
        "eventList[0].properties: must be a string holding a JSON object",
    ),
    "properties not JSON": (a_request([an_event(properties="platform=ios")]), "is not valid JSON"),
    "properties a JSON array": (a_request([an_event(properties="[1, 2]")]), "must encode a JSON object"),
    "properties reserved key": (
        a_request([an_event(properties='{"userId": "u"}')]),
        "key 'userId' is reserved",
    ),
    "properties reserved key in other case": (
        a_request([an_event(properties='{"sessionid": "s"}')]),
        "key 'sessionid' is reserved",
    ),
    "properties snake_case key": (
        a_request([an_event(properties='{"lobby_section": "popular"}')]),
        "key 'lobby_section' is not camelCase",
    ),
    "properties PascalCase key": (
        a_request([an_event(properties='{"Platform": "ios"}')]),
        "key 'Platform' is not camelCase",
    ),
    "properties nested value": (
        a_request([an_event(properties='{"stake": {"amount": 1}}')]),
        "value of 'stake' must be a string, number, boolean or null",
    ),
    "metricAttribution without source": (
        a_request([an_event(metricAttribution={})]),
        "eventList[0].metricAttribution.eventAttributionSource: is required",
    ),
    "bad event in the middle names its index": (
        a_request([an_event(0), an_event(1, properties='{"user_id": "x"}'), an_event(2)]),
        "1 validation error detected: eventList[1].properties: key 'user_id'",
    ),
}


@pytest.mark.parametrize("case", list(LIMIT_CASES))
def test_limit_is_rejected_with_invalid_input(
    case: str, emulator: EmulatorProcess, unchecked_client: PersonalizeEventsClient
) -> None:
    request, expected = LIMIT_CASES[case]
    error = error_of(lambda: unchecked_client.put_events(**request))
    assert error.response["Error"]["Code"] == "InvalidInputException"
    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert expected in error.response["Error"]["Message"]
    stats = emulator.stats()
    assert stats["eventsAccepted"] == 0, "a rejected batch is rejected as a whole"
    assert stats["calls"]["PutEvents"]["invalid"] == 1


RAW_CASES: dict[str, tuple[dict[str, Any], str]] = {
    "sentAt as a string": (a_request([an_event(sentAt="2024-06-01T00:00:00Z")]), "sentAt: must be a number"),
    "sentAt in milliseconds": (a_request([an_event(sentAt=1_717_000_000_000_000)]), "milliseconds"),
    "eventValue as a string": (a_request([an_event(eventValue="high")]), "eventValue: must be a number"),
    "sessionId as a number": (a_request(sessionId=42), "sessionId: must be a string, got number"),
    "eventList not a list": (a_request(eventList={"eventType": "x"}), "eventList: must be a list"),
}


@pytest.mark.parametrize("case", list(RAW_CASES))
def test_malformed_members_from_any_client_are_rejected(case: str, emulator: EmulatorProcess) -> None:
    request, expected = RAW_CASES[case]
    status, headers, body = post_raw(emulator, "/events", request)
    assert status == 400
    assert headers["x-amzn-errortype"].split(":")[0] == "InvalidInputException"
    assert expected in body["message"]
    assert emulator.stats()["eventsAccepted"] == 0


def test_body_that_is_not_json_is_a_serialization_error(emulator: EmulatorProcess) -> None:
    request = urllib.request.Request(emulator.url + "/events", data=b"{not json", method="POST")
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=10)
    assert caught.value.code == 400
    assert caught.value.headers["x-amzn-ErrorType"].startswith("SerializationException")


# ------------------------------------------------------------------------------- trackers, quota


def test_unknown_tracker_is_resource_not_found(
    emulator: EmulatorProcess, events_client: PersonalizeEventsClient
) -> None:
    error = error_of(lambda: events_client.put_events(**a_request(trackingId="no-such-tracker")))
    assert error.response["Error"]["Code"] == "ResourceNotFoundException"
    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert emulator.stats()["calls"]["PutEvents"]["not_found"] == 1


def test_deleted_tracker_is_not_found(emulator: EmulatorProcess, events_client: PersonalizeEventsClient) -> None:
    emulator.delete_tracker(TRACKER)
    error = error_of(lambda: events_client.put_events(**a_request()))
    assert error.response["Error"]["Code"] == "ResourceNotFoundException"
    with pytest.raises(EmulatorError) as caught:
        emulator.delete_tracker(TRACKER)
    assert caught.value.status == 404


def test_quota_beyond_rate_is_throttled(emulator: EmulatorProcess, events_client: PersonalizeEventsClient) -> None:
    emulator.create_tracker("slow", quota_per_second=1)
    events_client.put_events(**a_request(trackingId="slow"))
    error = error_of(lambda: events_client.put_events(**a_request([an_event(1)], trackingId="slow")))
    assert error.response["Error"]["Code"] == "ThrottlingException"
    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert error.response["ResponseMetadata"]["RetryAttempts"] == 0
    assert emulator.event_ids("slow") == ["event-0"]
    calls = emulator.stats()["calls"]["PutEvents"]
    assert (calls["ok"], calls["throttled"]) == (1, 1)


def test_burst_then_throttle(emulator: EmulatorProcess, events_client: PersonalizeEventsClient) -> None:
    emulator.create_tracker("bursty", quota_per_second=2, burst=5)
    outcomes = []
    for number in range(8):
        try:
            events_client.put_events(**a_request([an_event(number)], trackingId="bursty"))
            outcomes.append("ok")
        except ClientError as error:
            outcomes.append(error.response["Error"]["Code"])
    # 5 from the burst, at most 1 more refilled while 8 quick calls run; the rest throttled.
    assert outcomes[:5] == ["ok"] * 5
    assert outcomes.count("ThrottlingException") >= 2


def test_default_quota_allows_a_burst(personalize_emulator: EmulatorProcess) -> None:
    tracker = personalize_emulator.create_tracker("default-quota")
    assert tracker["quotaPerSecond"] == 1000
    client = make_events_client(personalize_emulator)
    for number in range(20):
        client.put_events(**a_request([an_event(number)], trackingId="default-quota"))
    assert len(personalize_emulator.event_ids("default-quota")) == 20


def test_start_up_trackers_and_default_quota_flags(tmp_path: Path) -> None:
    with run_emulator(trackers=["alpha", ("beta", 3), ("gamma", None)], default_quota=7) as emulator:
        quotas = {tracker["trackingId"]: tracker["quotaPerSecond"] for tracker in emulator.trackers()}
        assert quotas == {"alpha": 7, "beta": 3, "gamma": None}
        emulator.create_tracker("delta")
        emulator.reset()
        assert sorted(tracker["trackingId"] for tracker in emulator.trackers()) == ["alpha", "beta", "gamma"]
        assert all(json.loads(line)["level"] for line in emulator.logs().splitlines())


# ---------------------------------------------------------------------------------------- faults


def test_error_rate_one_answers_5xx(emulator: EmulatorProcess, events_client: PersonalizeEventsClient) -> None:
    emulator.set_faults([error_fault(1.0, operation="PutEvents")])
    error = error_of(lambda: events_client.put_events(**a_request()))
    assert error.response["Error"]["Code"] == "InternalFailure"
    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    # Scoped to PutEvents: PutItems is untouched.
    events_client.put_items(datasetArn=ITEMS_ARN, items=[{"itemId": "game-1"}])

    emulator.set_faults([error_fault(1.0, status=503)])
    error = error_of(lambda: events_client.put_events(**a_request()))
    assert (error.response["Error"]["Code"], error.response["ResponseMetadata"]["HTTPStatusCode"]) == (
        "ServiceUnavailable",
        503,
    )
    emulator.set_faults([error_fault(1.0, status=429)])
    error = error_of(lambda: events_client.put_events(**a_request()))
    assert error.response["Error"]["Code"] == "TooManyRequestsException"

    emulator.clear_faults()
    events_client.put_events(**a_request())
    stats = emulator.stats()
    assert stats["calls"]["PutEvents"]["fault"] == 3
    assert stats["eventsAccepted"] == 1


def test_error_fault_with_count_fires_that_many_times(
    emulator: EmulatorProcess, events_client: PersonalizeEventsClient
) -> None:
    emulator.set_faults([error_fault(1.0, status=500, count=2)])
    outcomes = []
    for _ in range(4):
        try:
            events_client.put_events(**a_request())
            outcomes.append("ok")
        except ClientError as error:
            outcomes.append(error.response["Error"]["Code"])
    assert outcomes == ["InternalFailure", "InternalFailure", "ok", "ok"]
    assert emulator.faults() == []


def test_seeded_error_rate_is_deterministic(emulator: EmulatorProcess, events_client: PersonalizeEventsClient) -> None:
    def run() -> list[bool]:
        emulator.set_faults([error_fault(0.5, status=503)], seed=42)
        outcomes = []
        for _ in range(30):
            try:
                events_client.put_events(**a_request())
                outcomes.append(True)
            except ClientError:
                outcomes.append(False)
        return outcomes

    first, second = run(), run()
    assert first == second
    assert 3 <= first.count(False) <= 27


def test_latency_adds_delay(emulator: EmulatorProcess, events_client: PersonalizeEventsClient) -> None:
    emulator.set_faults([latency_fault(300, 50, operation="PutEvents")], seed=1)
    started = time.monotonic()
    events_client.put_events(**a_request())
    elapsed = time.monotonic() - started
    assert 0.3 <= elapsed < 5.0
    assert emulator.event_ids() == ["event-0"]


def test_outage_answers_503_then_recovers(emulator: EmulatorProcess, events_client: PersonalizeEventsClient) -> None:
    started = time.monotonic()
    emulator.set_faults([outage_fault(0.5)])
    error = error_of(lambda: events_client.put_events(**a_request()))
    assert error.response["Error"]["Code"] == "ServiceUnavailable"
    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    (rule,) = emulator.faults()
    assert rule["kind"] == "outage"
    assert 0 < rule["remainingSeconds"] <= 0.5

    deadline = time.monotonic() + 10
    while True:
        try:
            events_client.put_events(**a_request())
            break
        except ClientError as error:
            assert error.response["Error"]["Code"] == "ServiceUnavailable"
            assert time.monotonic() < deadline, "the outage never ended"
            time.sleep(0.05)
    assert time.monotonic() - started >= 0.45
    assert emulator.event_ids() == ["event-0"]


def test_bad_fault_rules_are_refused(emulator: EmulatorProcess) -> None:
    with pytest.raises(EmulatorError) as caught:
        emulator.set_faults([{"kind": "meteor"}])
    assert caught.value.status == 400
    with pytest.raises(EmulatorError):
        emulator.set_faults([error_fault(1.5)])
    with pytest.raises(EmulatorError):
        emulator.set_faults([{"kind": "outage"}])
    assert emulator.faults() == []


# ------------------------------------------------------------------------------------ items, users


def test_put_items_and_users_are_accepted(emulator: EmulatorProcess, events_client: PersonalizeEventsClient) -> None:
    events_client.put_items(
        datasetArn=ITEMS_ARN,
        items=[
            {"itemId": "game-1", "properties": json.dumps({"genre": "slots|classic", "rtp": 96.5})},
            {"itemId": "game-2"},
        ],
    )
    events_client.put_users(datasetArn=USERS_ARN, users=[{"userId": "player-1", "properties": '{"country": "MT"}'}])
    items = emulator.items(ITEMS_ARN)
    assert [item["itemId"] for item in items] == ["game-1", "game-2"]
    assert json.loads(items[0]["properties"]) == {"genre": "slots|classic", "rtp": 96.5}
    assert items[1]["properties"] is None
    assert [user["userId"] for user in emulator.users()] == ["player-1"]
    stats = emulator.stats()
    assert (stats["itemsAccepted"], stats["usersAccepted"]) == (2, 1)


BIG_PROPERTIES = json.dumps({"x": "y" * 32000})
RECORD_CASES: dict[str, tuple[str, dict[str, Any], str, str]] = {
    "11 items": (
        "put_items",
        {"datasetArn": ITEMS_ARN, "items": [{"itemId": f"g{n}"} for n in range(11)]},
        "InvalidInputException",
        "items: must hold 1..10",
    ),
    "item properties a JSON array": (
        "put_items",
        {"datasetArn": ITEMS_ARN, "items": [{"itemId": "g", "properties": "[]"}]},
        "InvalidInputException",
        "items[0].properties: must encode a JSON object",
    ),
    "itemId 257 chars": (
        "put_items",
        {"datasetArn": ITEMS_ARN, "items": [{"itemId": "g" * 257}]},
        "InvalidInputException",
        "items[0].itemId",
    ),
    "item properties too long": (
        "put_items",
        {"datasetArn": ITEMS_ARN, "items": [{"itemId": "g", "properties": BIG_PROPERTIES}]},
        "InvalidInputException",
        "must have length 1..32000",
    ),
    "datasetArn not an ARN": (
        "put_items",
        {"datasetArn": "not-an-arn", "items": [{"itemId": "g"}]},
        "InvalidInputException",
        "datasetArn: is not a Personalize ARN",
    ),
    "items into the USERS dataset": (
        "put_items",
        {"datasetArn": USERS_ARN, "items": [{"itemId": "g"}]},
        "InvalidInputException",
        "is of type USERS, not ITEMS",
    ),
    "unknown dataset": (
        "put_items",
        {"datasetArn": ITEMS_ARN.replace(TRACKER, "nowhere"), "items": [{"itemId": "g"}]},
        "ResourceNotFoundException",
        "does not exist",
    ),
    "user properties snake_case key": (
        "put_users",
        {"datasetArn": USERS_ARN, "users": [{"userId": "u", "properties": '{"home_country": "MT"}'}]},
        "InvalidInputException",
        "users[0].properties: key 'home_country' is not camelCase",
    ),
    "0 users": (
        "put_users",
        {"datasetArn": USERS_ARN, "users": []},
        "InvalidInputException",
        "users: must hold",
    ),
}


@pytest.mark.parametrize("case", list(RECORD_CASES))
def test_items_and_users_limits(
    case: str, emulator: EmulatorProcess, unchecked_client: PersonalizeEventsClient
) -> None:
    operation, request_body, code, expected = RECORD_CASES[case]
    error = error_of(lambda: getattr(unchecked_client, operation)(**request_body))
    assert error.response["Error"]["Code"] == code
    assert expected in error.response["Error"]["Message"]
    assert emulator.stats()["itemsAccepted"] == emulator.stats()["usersAccepted"] == 0


# ------------------------------------------------------------------------------------ persistence


def test_events_and_trackers_survive_a_restart(tmp_path: Path) -> None:
    data_dir = tmp_path / "personalize"
    with run_emulator(data_dir=data_dir) as first:
        first.create_tracker("durable", quota_per_second=50)
        client = make_events_client(first)
        client.put_events(**a_request([an_event(1), an_event(2)], trackingId="durable"))
        client.put_items(datasetArn=ITEMS_ARN.replace(TRACKER, "durable"), items=[{"itemId": "game-9"}])
        before = first.events()
        assert first.stop() == 0

    with run_emulator(data_dir=data_dir) as second:
        assert second.events() == before
        (tracker,) = second.trackers()
        assert (tracker["trackingId"], tracker["quotaPerSecond"]) == ("durable", 50)
        assert [item["itemId"] for item in second.items()] == ["game-9"]
        client = make_events_client(second)
        client.put_events(**a_request([an_event(2)], trackingId="durable"))
        after = second.events()
        assert [event["eventId"] for event in after] == ["event-1", "event-2", "event-2"]
        assert after[-1]["seq"] > before[-1]["seq"]
        stats = second.stats()
        assert (stats["eventsAccepted"], stats["distinctEventIds"]) == (3, 2)

    lines = (data_dir / "events.jsonl").read_text().splitlines()
    assert [json.loads(line)["eventId"] for line in lines] == ["event-1", "event-2", "event-2"]


def test_without_data_dir_nothing_survives() -> None:
    with run_emulator(trackers=["t"]) as first:
        make_events_client(first).put_events(**a_request(trackingId="t"))
    with run_emulator(trackers=["t"]) as second:
        assert second.events() == []


def test_botocore_retries_throttling_and_5xx(emulator: EmulatorProcess) -> None:
    emulator.set_faults([error_fault(1.0, code="ThrottlingException", count=1), error_fault(1.0, status=500, count=1)])
    client = make_events_client(emulator, total_attempts=3)
    response = client.put_events(**a_request())
    assert response["ResponseMetadata"]["RetryAttempts"] == 2
    assert emulator.stats()["calls"]["PutEvents"] == {
        "ok": 1,
        "invalid": 0,
        "throttled": 0,
        "fault": 2,
        "not_found": 0,
        "error": 0,
    }
