"""The Personalize runtime: GetRecommendations of one campaign (popular, trending or for-you)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from pam.api.aws.client import AwsJsonClient

RUNTIME_CONTENT_TYPE: Final = "application/json"


@dataclass(frozen=True, slots=True)
class Recommendations:
    item_ids: tuple[str, ...]
    recommendation_id: str | None


class RecommendationsCampaign:
    """Asks one campaign for a user's recommendations (with the filter, when one is given)."""

    def __init__(self, client: AwsJsonClient, campaign_arn: str, *, filter_arn: str | None = None) -> None:
        self._client = client
        self.campaign_arn = campaign_arn
        self.filter_arn = filter_arn

    async def get(self, user_id: str, num_results: int) -> Recommendations:
        payload: dict[str, Any] = {"campaignArn": self.campaign_arn, "userId": user_id, "numResults": num_results}
        if self.filter_arn is not None:
            payload["filterArn"] = self.filter_arn
        answer = await self._client.call("/recommendations", payload)
        items = answer.get("itemList") or []
        recommendation_id = answer.get("recommendationId")
        return Recommendations(
            item_ids=tuple(str(entry["itemId"]) for entry in items if isinstance(entry, dict) and "itemId" in entry),
            recommendation_id=str(recommendation_id) if recommendation_id else None,
        )
