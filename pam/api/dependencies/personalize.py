"""The Personalize runtime: GetRecommendations of one campaign (popular, trending or for-you)."""

from __future__ import annotations

import operator
from typing import Any, Final, NamedTuple

from pam.api.aws.client import AwsJsonClient

RUNTIME_CONTENT_TYPE: Final = "application/json"


class Recommendations(NamedTuple):
    """A campaign's answer (a named tuple: three are made per lobby)."""

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
        recommendation_id = answer.get("recommendationId")
        return Recommendations(
            item_ids=_item_ids(answer.get("itemList")),
            recommendation_id=str(recommendation_id) if recommendation_id else None,
        )


_ITEM_ID = operator.itemgetter("itemId")


def _item_ids(items: Any) -> tuple[str, ...]:
    """The ``itemId`` of each entry of ``itemList``: the common shape in one C-level pass, anything else
    (entries without an id, ids that are not strings) the slow way."""
    if not isinstance(items, list):
        return ()
    try:
        ids = tuple(map(_ITEM_ID, items))
    except (KeyError, TypeError):
        pass
    else:
        if not ids or set(map(type, ids)) == {str}:
            return ids
    found = (entry.get("itemId") if isinstance(entry, dict) else None for entry in items)
    return tuple(str(item) for item in found if item is not None)
