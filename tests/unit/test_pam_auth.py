"""Tokens and the HTTP surface, through the ASGI app with fake dependencies: valid, expired, wrong subject,
wrong key, wrong audience / issuer, none, alg=none, admin role, RS256/ES256 keys; player id validation;
problem details without internals; health, readiness, metrics and the OpenAPI description."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from starlette.testclient import TestClient

from pam.api.app import AppServices, create_app
from pam.api.auth import AuthError, TokenIssuer, TokenVerifier
from pam.api.catalog import CatalogStore, FileCatalogSource
from pam.api.deadline.breaker import CircuitBreaker
from pam.api.deadline.guard import GuardedDependency
from pam.api.dependencies.personalize import Recommendations
from pam.api.dependencies.players import PlayerProfile
from pam.api.lobby import DEPENDENCIES, FOR_YOU, POPULAR, TRENDING, Campaign, LobbyConfig, LobbyService
from pam.api.metrics import LobbyMetrics
from pam.api.models import LobbyResponse, is_player_id
from pam.settings import PamSettings, SettingsError

SECRET = "unit-test-secret-that-is-long-enough-0123456789"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


class Players:
    async def lookup(self, player_id: str) -> PlayerProfile:
        return PlayerProfile(player_id, known=True, country="MT", recent_game_ids=())


class Popular:
    async def get(self, user_id: str, num_results: int) -> Recommendations:
        return Recommendations(("g-00002", "g-00003", "g-00004"), "RID-popular")


def settings(**overrides: Any) -> PamSettings:
    values: dict[str, Any] = {"jwt_secret": SECRET}
    values.update(overrides)
    return PamSettings(**values)


def services(the_settings: PamSettings, catalog_path: Path = FIXTURES / "catalog.json") -> AppServices:
    metrics = LobbyMetrics()
    guards = {name: GuardedDependency(name, CircuitBreaker(name), 0.2, metrics) for name in DEPENDENCIES}
    campaigns: dict[str, Campaign | None] = {FOR_YOU: None, TRENDING: None, POPULAR: Popular()}
    store = CatalogStore(FileCatalogSource(catalog_path), metrics)
    lobby = LobbyService(
        catalog=lambda: store.catalog,
        players=Players(),
        similar=None,
        campaigns=campaigns,
        guards=guards,
        config=LobbyConfig(section_size=4),
        observer=metrics,
    )
    return AppServices(
        lobby=lobby,
        catalog=store,
        verifier=TokenVerifier(the_settings),
        metrics=metrics,
        catalog_refresh_seconds=3600,
        fallback_refresh_seconds=3600,
    )


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(create_app(services(settings())), raise_server_exceptions=False) as test_client:
        yield test_client


def token(subject: str = "p-1", *, key: Any = SECRET, algorithm: str = "HS256", **claims: Any) -> str:
    now = int(time.time())
    body: dict[str, Any] = {"sub": subject, "iss": "pam", "aud": "pam-lobby", "iat": now, "exp": now + 300}
    body.update(claims)
    body = {name: value for name, value in body.items() if value is not None}
    return jwt.encode(body, key, algorithm=algorithm)


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def assert_problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert set(body) <= {"type", "title", "status", "detail"}
    text = response.text.lower()
    for internal in ("traceback", "arn:", "similar-games", "sqlalchemy", "secret"):
        assert internal not in text
    return body


# --- tokens -------------------------------------------------------------------------------------------


def test_valid_token_reads_its_own_lobby(client: TestClient) -> None:
    response = client.get("/v1/players/p-1/lobby", headers=bearer(token()))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
    lobby = LobbyResponse.model_validate(response.json())
    assert lobby.player_id == "p-1"
    assert [s.key for s in lobby.sections] == ["popular"]
    # g-00002 is not licensed in Malta (the player's country): it is left out.
    assert [g.game_id for g in lobby.sections[0].games][:2] == ["g-00003", "g-00004"]
    assert lobby.sections[0].recommendation_id == "RID-popular"


def test_missing_token_is_401_with_a_challenge(client: TestClient) -> None:
    response = client.get("/v1/players/p-1/lobby")
    assert_problem(response, 401)
    assert response.headers["www-authenticate"] == 'Bearer realm="pam"'


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ("Basic dXNlcjpwYXNz", "not 'Bearer"),
        ("Bearer", "not 'Bearer"),
        ("Bearer not.a.token", "malformed"),
    ],
)
def test_malformed_authorization_is_401(client: TestClient, header: str, reason: str) -> None:
    response = client.get("/v1/players/p-1/lobby", headers={"Authorization": header})
    assert reason in assert_problem(response, 401)["detail"]
    assert response.headers["www-authenticate"].startswith('Bearer realm="pam", error=')


def test_expired_token_is_401(client: TestClient) -> None:
    past = int(time.time()) - 3600
    response = client.get("/v1/players/p-1/lobby", headers=bearer(token(iat=past - 60, exp=past)))
    assert "expired" in assert_problem(response, 401)["detail"]
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


def test_token_within_the_leeway_is_accepted(client: TestClient) -> None:
    response = client.get("/v1/players/p-1/lobby", headers=bearer(token(exp=int(time.time()) - 3)))
    assert response.status_code == 200


def test_token_without_exp_is_401(client: TestClient) -> None:
    assert_problem(client.get("/v1/players/p-1/lobby", headers=bearer(token(exp=None))), 401)


def test_wrong_subject_is_403(client: TestClient) -> None:
    response = client.get("/v1/players/p-2/lobby", headers=bearer(token("p-1")))
    assert "own" in assert_problem(response, 403)["detail"]


def test_wrong_key_is_401(client: TestClient) -> None:
    forged = token(key="another-secret-that-is-also-long-enough-xyz")
    assert "signature" in assert_problem(client.get("/v1/players/p-1/lobby", headers=bearer(forged)), 401)["detail"]


def test_wrong_audience_and_issuer_are_401(client: TestClient) -> None:
    response = client.get("/v1/players/p-1/lobby", headers=bearer(token(aud="someone-else")))
    assert "not meant" in assert_problem(response, 401)["detail"]
    response = client.get("/v1/players/p-1/lobby", headers=bearer(token(iss="evil")))
    assert "issuer" in assert_problem(response, 401)["detail"]


def test_alg_none_is_rejected(client: TestClient) -> None:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    now = int(time.time())
    claims = {"sub": "p-1", "iss": "pam", "aud": "pam-lobby", "exp": now + 300}
    unsigned = f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."
    response = client.get("/v1/players/p-1/lobby", headers=bearer(unsigned))
    assert "algorithm" in assert_problem(response, 401)["detail"]


def test_algorithm_not_on_the_allow_list_is_rejected(client: TestClient) -> None:
    response = client.get("/v1/players/p-1/lobby", headers=bearer(token(algorithm="HS512")))
    assert "algorithm" in assert_problem(response, 401)["detail"]


def test_rs256_public_key_and_no_hmac_confusion(tmp_path: Path) -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    key_file = tmp_path / "public.pem"
    key_file.write_bytes(public_pem)
    verifier = TokenVerifier(settings(jwt_secret=None, jwt_public_key=str(key_file)))
    assert verifier.algorithms == {"RS256"}
    assert verifier.verify(token(key=private, algorithm="RS256")).subject == "p-1"
    # The public key used as an HMAC secret (the algorithm confusion attack) is refused.
    with pytest.raises(AuthError, match="algorithm"):
        verifier.verify(jwt.encode({"sub": "p-1"}, "x" * 40, algorithm="HS256"))


def test_es256_keys_sign_and_verify() -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    private_pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public_pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    the_settings = settings(jwt_secret=None, jwt_public_key=public_pem, jwt_private_key=private_pem)
    issued = TokenIssuer(the_settings).issue("p-9", admin=True, ttl_seconds=60)
    assert jwt.get_unverified_header(issued)["alg"] == "ES256"
    principal = TokenVerifier(the_settings).verify(issued)
    assert principal.subject == "p-9"
    assert TokenVerifier(the_settings).is_admin(principal)


def test_no_key_or_a_short_secret_is_a_settings_error() -> None:
    with pytest.raises(SettingsError, match="PAM_JWT_SECRET or PAM_JWT_PUBLIC_KEY"):
        TokenVerifier(PamSettings())
    with pytest.raises(ValueError, match="at least 32"):
        PamSettings(jwt_secret="short")
    with pytest.raises(SettingsError, match="PAM_JWT_ALGORITHMS"):
        TokenVerifier(settings(jwt_algorithms="RS256"))


def test_issued_token_is_accepted_and_cached_until_it_expires() -> None:
    clock = [time.time()]
    the_settings = settings()
    issued = TokenIssuer(the_settings, clock=lambda: clock[0]).issue("p-1", ttl_seconds=60)
    verifier = TokenVerifier(the_settings, clock=lambda: clock[0])
    first = verifier.verify(issued)
    assert verifier.verify(issued) is first
    clock[0] += 60 + 11
    with pytest.raises(AuthError, match="expired"):
        verifier.verify(issued)


# --- player ids, admin, errors -------------------------------------------------------------------------


@pytest.mark.parametrize("player_id", ["-starts-with-dash", "a" * 65, "has%20space", "semi;colon"])
def test_invalid_player_id_is_422(client: TestClient, player_id: str) -> None:
    response = client.get(f"/v1/players/{player_id}/lobby", headers=bearer(token(player_id)))
    assert "player_id" in assert_problem(response, 422)["detail"]


@pytest.mark.parametrize("player_id", ["p-1\n", "p-1\r\n", "p-1\x00"])
def test_a_player_id_with_a_trailing_control_character_is_422(client: TestClient, player_id: str) -> None:
    # Even with a token whose subject is that very id: the id is checked whole, not up to a line end.
    path = f"/v1/players/{quote(player_id)}/lobby"
    assert_problem(client.get(path, headers=bearer(token(player_id))), 422)
    assert client.head(path, headers=bearer(token(player_id))).status_code == 422  # through Starlette's route
    assert is_player_id("p-1")
    assert not is_player_id(player_id)


def test_admin_operations_need_the_admin_role(client: TestClient) -> None:
    assert_problem(client.get("/v1/admin/dependencies"), 401)
    assert_problem(client.get("/v1/admin/dependencies", headers=bearer(token())), 403)
    admin = bearer(token("ops", roles=["admin"]))
    response = client.get("/v1/admin/dependencies", headers=admin)
    assert response.status_code == 200
    states = {entry["name"]: entry["state"] for entry in response.json()["dependencies"]}
    assert states == dict.fromkeys(DEPENDENCIES, "closed")
    assert_problem(client.post("/v1/admin/catalog/refresh", headers=bearer(token())), 403)
    refreshed = client.post("/v1/admin/catalog/refresh", headers=admin)
    assert refreshed.status_code == 200
    assert refreshed.json()["outcome"] == "not_modified"
    assert refreshed.json()["games"] == 79


def test_unknown_route_and_method_are_problems(client: TestClient) -> None:
    assert_problem(client.get("/v1/nothing"), 404)
    assert_problem(client.post("/v1/players/p-1/lobby", headers=bearer(token())), 405)


def test_health_readiness_metrics_and_openapi_need_no_token(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready", "catalogGames": 79}
    client.get("/v1/players/p-1/lobby", headers=bearer(token()))
    metrics = client.get("/metrics").text
    assert (
        'pam_http_request_duration_seconds_count{method="GET",route="/v1/players/{player_id}/lobby",status="200"}'
        in (metrics)
    )
    assert 'pam_dependency_calls_total{dependency="popular",outcome="ok"}' in metrics
    assert 'pam_catalog_refreshes_total{outcome="updated"} 1.0' in metrics
    assert "pam_catalog_games 79.0" in metrics
    document = client.get("/openapi.json").json()
    assert document["openapi"].startswith("3.1")
    assert "/v1/players/{player_id}/lobby" in document["paths"]
    assert "LobbyResponse" in document["components"]["schemas"]
    assert client.get("/lobby").status_code == 200  # the page's route, no token


def test_not_ready_without_a_catalog(tmp_path: Path) -> None:
    app = create_app(services(settings(), catalog_path=tmp_path / "missing.json"))
    with TestClient(app, raise_server_exceptions=False) as test_client:
        assert_problem(test_client.get("/readyz"), 503)
        response = test_client.get("/v1/players/p-1/lobby", headers=bearer(token()))
        assert_problem(response, 503)
        assert response.headers["retry-after"] == "1"
