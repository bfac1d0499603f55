"""The personalize-runtime API (rest-json): GetRecommendations and GetPersonalizedRanking.

- ``POST /recommendations`` GetRecommendations: ``campaignArn`` (``recommenderArn``: no recommenders are
  emulated, so ResourceNotFoundException), ``itemId`` for RELATED_ITEMS, ``userId`` for
  User-Personalization, ``numResults`` (default 25, at most 500), ``filterArn`` + ``filterValues`` (the
  subset in :mod:`devstack.personalize.filters`), ``metadataColumns`` when the campaign enables metadata.
  Answers ``itemList`` ``[{"itemId", "score"?}]`` and a ``recommendationId`` (``RID-<uuid>``, 40 chars).
- ``POST /personalize-ranking`` GetPersonalizedRanking: ``campaignArn`` of a PERSONALIZED_RANKING
  recipe, ``userId``, ``inputList``; answers ``personalizedRanking``.

Unknown or inactive campaigns: ``ResourceNotFoundException``; bad input: ``InvalidInputException``.
"""

from __future__ import annotations

import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from devstack.personalize.context import Emulator
from devstack.personalize.control.plane import ControlPlane
from devstack.personalize.control.serving import bound_filter, rank, recommend, serving_campaign
from devstack.personalize.errors import InvalidInputError, UnsupportedOperationError
from devstack.personalize.protocol import dispatch
from devstack.personalize.shapes import RUNTIME_SERVICE, operation_model, validate

MAX_RANKING_INPUT = 500


def recommendation_id() -> str:
    """A fresh recommendation id: ``RID-`` and a uuid, 40 characters (PutEvents takes at most 40)."""
    return f"RID-{uuid.uuid4()}"


class RuntimeApi:
    """Handlers of the runtime API over one control plane."""

    def __init__(self, plane: ControlPlane) -> None:
        self.plane = plane

    @staticmethod
    def _validate(operation: str, body: dict[str, Any]) -> None:
        model = operation_model(RUNTIME_SERVICE, operation)
        assert model is not None
        validate(model, body)

    def get_recommendations(self, body: dict[str, Any]) -> dict[str, Any]:
        """GetRecommendations."""
        self._validate("GetRecommendations", body)
        plane = self.plane
        serving = serving_campaign(plane, body.get("campaignArn"), body.get("recommenderArn"))
        if body.get("promotions"):
            raise InvalidInputError("promotions are not supported by the emulator")
        columns: list[str] = []
        metadata = body.get("metadataColumns")
        if metadata:
            campaign = serving.campaign
            if campaign is None or not campaign.campaign_config.get("enableMetadataWithRecommendations"):
                raise InvalidInputError("metadataColumns needs a campaign with enableMetadataWithRecommendations")
            unknown = sorted(set(metadata) - {"ITEMS"})
            if unknown:
                raise InvalidInputError(f"metadataColumns may only name ITEMS columns, got {unknown}")
            columns = list(metadata.get("ITEMS") or [])
        item_filter = bound_filter(plane, serving, body.get("filterArn"), body.get("filterValues"))
        items = recommend(
            serving,
            user_id=body.get("userId"),
            item_id=body.get("itemId"),
            num_results=body.get("numResults"),
            item_filter=item_filter,
            metadata_columns=columns,
        )
        return {"itemList": items, "recommendationId": recommendation_id()}

    def get_personalized_ranking(self, body: dict[str, Any]) -> dict[str, Any]:
        """GetPersonalizedRanking."""
        self._validate("GetPersonalizedRanking", body)
        plane = self.plane
        serving = serving_campaign(plane, body.get("campaignArn"), None)
        input_list: list[str] = body["inputList"]
        if len(input_list) > MAX_RANKING_INPUT:
            raise InvalidInputError(f"inputList holds at most {MAX_RANKING_INPUT} items, got {len(input_list)}")
        item_filter = bound_filter(plane, serving, body.get("filterArn"), body.get("filterValues"))
        ranking = rank(serving, user_id=body["userId"], input_list=input_list, item_filter=item_filter)
        return {"personalizedRanking": ranking, "recommendationId": recommendation_id()}

    @staticmethod
    def get_action_recommendations(body: dict[str, Any]) -> dict[str, Any]:
        """GetActionRecommendations: not emulated."""
        raise UnsupportedOperationError("GetActionRecommendations")


def routes(emulator: Emulator) -> list[Route]:
    """The runtime API's routes (the emulator must have a control plane)."""
    plane = emulator.control
    if plane is None:
        return []
    api = RuntimeApi(plane)

    async def get_recommendations(request: Request) -> Response:
        return await dispatch(emulator, "GetRecommendations", request, api.get_recommendations)

    async def get_personalized_ranking(request: Request) -> Response:
        return await dispatch(emulator, "GetPersonalizedRanking", request, api.get_personalized_ranking)

    async def get_action_recommendations(request: Request) -> Response:
        return await dispatch(emulator, "GetActionRecommendations", request, api.get_action_recommendations)

    return [
        Route("/recommendations", get_recommendations, methods=["POST"]),
        Route("/personalize-ranking", get_personalized_ranking, methods=["POST"]),
        Route("/action-recommendations", get_action_recommendations, methods=["POST"]),
    ]
