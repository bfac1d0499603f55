"""The OpenAPI 3.1 description, generated from :mod:`pam.api.models`."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from pam.api.models import (
    PLAYER_ID_MAX_LENGTH,
    PLAYER_ID_PATTERN,
    CatalogRefreshResponse,
    DependenciesResponse,
    Health,
    LobbyResponse,
    Problem,
)

MODELS: tuple[type[BaseModel], ...] = (
    LobbyResponse,
    Problem,
    Health,
    DependenciesResponse,
    CatalogRefreshResponse,
)


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _json(model: type[BaseModel], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(model)}}}


def _problem(description: str, *, authenticate: bool = False) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/problem+json": {"schema": _ref(Problem)}},
    }
    if authenticate:
        response["headers"] = {
            "WWW-Authenticate": {"description": "the Bearer challenge", "schema": {"type": "string"}}
        }
    return response


def openapi_document(version: str = "0.1.0") -> dict[str, Any]:
    _, definitions = models_json_schema(
        [(model, "serialization") for model in MODELS], ref_template="#/components/schemas/{model}"
    )
    schemas = definitions.get("$defs", {})
    unauthorized = _problem("no token, or the token is malformed, expired or not trusted", authenticate=True)
    admin_responses = {"401": unauthorized, "403": _problem("the token has no admin role")}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "PAM lobby service",
            "version": version,
            "description": "A player's personalized game lobby in one call.",
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
        "paths": {
            "/v1/players/{player_id}/lobby": {
                "get": {
                    "operationId": "getLobby",
                    "summary": "The player's lobby: ordered sections of games",
                    "security": [{"bearer": []}],
                    "parameters": [
                        {
                            "name": "player_id",
                            "in": "path",
                            "required": True,
                            "schema": {
                                "type": "string",
                                "pattern": PLAYER_ID_PATTERN,
                                "minLength": 1,
                                "maxLength": PLAYER_ID_MAX_LENGTH,
                            },
                        }
                    ],
                    "responses": {
                        "200": _json(LobbyResponse, "the lobby"),
                        "401": unauthorized,
                        "403": _problem("the token's subject is another player"),
                        "404": _problem("no such resource (e.g. a player id with a slash)"),
                        "422": _problem("the player id is not valid"),
                        "503": _problem("the catalog is not loaded yet"),
                    },
                }
            },
            "/healthz": {
                "get": {
                    "operationId": "health",
                    "summary": "Liveness",
                    "responses": {"200": _json(Health, "alive")},
                }
            },
            "/readyz": {
                "get": {
                    "operationId": "ready",
                    "summary": "Readiness: the catalog is loaded",
                    "responses": {"200": _json(Health, "ready"), "503": _problem("not ready")},
                }
            },
            "/metrics": {
                "get": {
                    "operationId": "metrics",
                    "summary": "Prometheus metrics",
                    "responses": {
                        "200": {"description": "metrics", "content": {"text/plain": {"schema": {"type": "string"}}}}
                    },
                }
            },
            "/v1/admin/dependencies": {
                "get": {
                    "operationId": "dependencies",
                    "summary": "Circuit breaker state of every dependency (admin)",
                    "security": [{"bearer": []}],
                    "responses": {"200": _json(DependenciesResponse, "the breakers"), **admin_responses},
                }
            },
            "/v1/admin/catalog/refresh": {
                "post": {
                    "operationId": "refreshCatalog",
                    "summary": "Read the catalog again now (admin)",
                    "security": [{"bearer": []}],
                    "responses": {"200": _json(CatalogRefreshResponse, "the refresh's outcome"), **admin_responses},
                }
            },
        },
    }
