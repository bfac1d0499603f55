"""The lobby route answered before Starlette's stack (``LobbyApp``): the same answers as through Starlette
(HEAD still goes that way), an unexpected error is a 500 problem without internals, and the request is
counted in the metrics under the route's template either way."""

from __future__ import annotations

import logging
import threading

import pytest
from starlette.testclient import TestClient

from pam.api.app import create_app
from pam.api.auth import TokenIssuer
from tests.unit.test_pam_auth import services, settings

LOBBY = "/v1/players/p-1/lobby"


def bearer(player_id: str = "p-1") -> dict[str, str]:
    return {"Authorization": f"Bearer {TokenIssuer(settings()).issue(player_id)}"}


def test_get_answers_the_lobby_and_head_the_same_headers() -> None:
    with TestClient(create_app(services(settings())), raise_server_exceptions=False) as client:
        got = client.get(LOBBY, headers=bearer())
        head = client.head(LOBBY, headers=bearer())
    assert got.status_code == 200
    assert got.headers["content-type"] == "application/json"
    assert got.headers["cache-control"] == "no-store"
    assert int(got.headers["content-length"]) == len(got.content)
    assert got.json()["playerId"] == "p-1"
    assert [section["key"] for section in got.json()["sections"]] == ["popular"]
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-type"] == "application/json"
    assert head.headers["cache-control"] == "no-store"


def test_problems_of_the_fast_path_carry_their_headers() -> None:
    with TestClient(create_app(services(settings())), raise_server_exceptions=False) as client:
        missing = client.get(LOBBY)
        other = client.get("/v1/players/p-2/lobby", headers=bearer())
        # Not the route's path: Starlette redirects it, as it did before the fast path.
        trailing = client.get(LOBBY + "/", headers=bearer(), follow_redirects=False)
    assert missing.status_code == 401
    assert missing.headers["content-type"] == "application/problem+json"
    assert missing.headers["www-authenticate"] == 'Bearer realm="pam"'
    assert missing.json() == {
        "type": "about:blank",
        "title": "Unauthorized",
        "status": 401,
        "detail": "a bearer token is required",
    }
    assert other.status_code == 403
    assert other.json()["detail"] == "a token may read its own player's lobby only"
    assert trailing.status_code == 307
    assert trailing.headers["location"].endswith(LOBBY)


def test_an_unexpected_error_is_a_500_problem_logged_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    app_services = services(settings())

    async def broken(player_id: str) -> None:
        raise RuntimeError("internal detail that must not leak")

    app_services.lobby.lobby = broken  # type: ignore[assignment, method-assign]
    with (
        caplog.at_level(logging.ERROR, logger="pam.api"),
        TestClient(create_app(app_services), raise_server_exceptions=False) as client,
    ):
        response = client.get(LOBBY, headers=bearer())
        metrics = client.get("/metrics").text
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json() == {
        "type": "about:blank",
        "title": "Internal error",
        "status": 500,
        "detail": "the server could not answer",
    }
    assert "internal detail" not in response.text
    assert any("RuntimeError" in record.getMessage() for record in caplog.records)
    assert (
        'pam_http_request_duration_seconds_count{method="GET",route="/v1/players/{player_id}/lobby",status="500"} 1.0'
        in metrics
    )


def test_the_warmups_run_from_the_start() -> None:
    started = threading.Event()

    async def warmup() -> None:  # e.g. reading the AWS credentials before the first lobby needs them
        started.set()

    app_services = services(settings())
    app_services.warmups.append(warmup)
    with TestClient(create_app(app_services)) as client:
        assert started.wait(5)
        assert client.get(LOBBY, headers=bearer()).status_code == 200
