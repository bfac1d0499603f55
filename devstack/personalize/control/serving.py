"""Recommendations from a trained model: shared by the runtime (GetRecommendations,
GetPersonalizedRanking) and batch inference jobs.

Inputs by recipe type, as the real service wants them: RELATED_ITEMS (SIMS) needs ``itemId``;
User-Personalization needs ``userId`` (Popularity-Count and Trending-Now only for filters that read the
user's interactions); PERSONALIZED_RANKING serves GetPersonalizedRanking only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from devstack.personalize.control.data import GroupData
from devstack.personalize.control.plane import ControlPlane
from devstack.personalize.control.resources import Campaign, Filter, SolutionVersion
from devstack.personalize.errors import InvalidInputError, ResourceNotFoundError
from devstack.personalize.filters import BoundFilter, FieldValue, FilterError, ItemFacts
from devstack.personalize.recipes import Model, Recipe

MAX_RESULTS: Final = 500
DEFAULT_RESULTS: Final = 25
#: Recipes that need a userId whatever the filter.
USER_REQUIRED: Final = frozenset({"aws-user-personalization", "aws-user-personalization-v2"})
SCORE_DIGITS: Final = 7


@dataclass(frozen=True, slots=True)
class Serving:
    """A solution version ready to answer: its model, recipe and the dataset group's live data."""

    version: SolutionVersion
    model: Model
    data: GroupData
    campaign: Campaign | None = None

    @property
    def recipe(self) -> Recipe:
        """The solution's recipe."""
        return self.version.solution.recipe


def serving_version(plane: ControlPlane, version: SolutionVersion, campaign: Campaign | None = None) -> Serving:
    """A :class:`Serving` for an ACTIVE solution version."""
    if not version.active or version.model is None:
        raise ResourceNotFoundError(f"Solution version {version.arn} is {version.status}, not ACTIVE")
    return Serving(version, version.model, plane.group_data(version.solution.dataset_group_arn), campaign)


def serving_campaign(plane: ControlPlane, campaign_arn: str | None, recommender_arn: str | None) -> Serving:
    """The campaign's :class:`Serving`; ``ResourceNotFoundError`` if unknown or not ACTIVE."""
    if recommender_arn is not None and campaign_arn is None:
        raise ResourceNotFoundError(f"Recommender {recommender_arn} does not exist (the emulator has no recommenders)")
    if campaign_arn is None:
        raise InvalidInputError("campaignArn or recommenderArn is required")
    campaign = plane.find(Campaign, campaign_arn)
    if campaign is None:
        raise ResourceNotFoundError(f"Campaign {campaign_arn} does not exist")
    if not campaign.active:
        raise ResourceNotFoundError(f"Campaign {campaign_arn} is {campaign.status}, not ACTIVE")
    version = plane.find(SolutionVersion, campaign.solution_version_arn)
    if version is None:
        raise ResourceNotFoundError(f"Solution version {campaign.solution_version_arn} does not exist")
    return serving_version(plane, version, campaign)


def bound_filter(
    plane: ControlPlane, serving: Serving, filter_arn: str | None, filter_values: Mapping[str, str] | None
) -> BoundFilter | None:
    """The request's filter with its values, or ``None`` without ``filterArn``."""
    if filter_arn is None:
        if filter_values:
            raise InvalidInputError("filterValues given without a filterArn")
        return None
    item_filter = plane.find(Filter, filter_arn)
    if item_filter is None:
        raise ResourceNotFoundError(f"Filter {filter_arn} does not exist")
    if not item_filter.active:
        raise InvalidInputError(f"Filter {filter_arn} is {item_filter.status}, not ACTIVE")
    if item_filter.dataset_group_arn != serving.version.solution.dataset_group_arn:
        raise InvalidInputError(f"Filter {filter_arn} belongs to another dataset group than the campaign")
    try:
        return item_filter.expression.bind(filter_values)
    except FilterError as exc:
        raise InvalidInputError(str(exc)) from None


def _score(value: float | None) -> float | None:
    return None if value is None else round(value, SCORE_DIGITS)


def _metadata_value(value: FieldValue) -> str:
    if isinstance(value, tuple):
        return "|".join(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def recommend(
    serving: Serving,
    *,
    user_id: str | None,
    item_id: str | None,
    num_results: int | None,
    item_filter: BoundFilter | None = None,
    metadata_columns: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """The best ``num_results`` (default 25, at most 500) items: ``[{"itemId", "score"?, "metadata"?}]``."""
    recipe = serving.recipe
    if recipe.recipe_type == "PERSONALIZED_RANKING":
        raise InvalidInputError(
            f"Campaigns of recipe {recipe.name} answer GetPersonalizedRanking, not GetRecommendations"
        )
    if recipe.recipe_type == "RELATED_ITEMS" and not item_id:
        raise InvalidInputError(f"itemId is required for recommendations from {recipe.name} (RELATED_ITEMS)")
    if recipe.name in USER_REQUIRED and not user_id:
        raise InvalidInputError(f"userId is required for recommendations from {recipe.name}")
    wanted = num_results or DEFAULT_RESULTS
    if wanted > MAX_RESULTS:
        raise InvalidInputError(f"numResults must be at most {MAX_RESULTS}, got {wanted}")
    data = serving.data
    facts = ItemFacts(data.item_fields, data.user_interactions(user_id)) if item_filter is not None else None
    results: list[dict[str, Any]] = []
    for candidate, score in serving.model.ranked(user_id=user_id, item_id=item_id):
        if item_filter is not None and facts is not None and not item_filter.allows(candidate, facts):
            continue
        entry: dict[str, Any] = {"itemId": candidate}
        if score is not None:
            entry["score"] = _score(score)
        if metadata_columns:
            fields = data.item_fields(candidate) or {}
            entry["metadata"] = {
                column: _metadata_value(fields[column.upper()])
                for column in metadata_columns
                if column.upper() in fields
            }
        results.append(entry)
        if len(results) >= wanted:
            break
    return results


def rank(
    serving: Serving, *, user_id: str, input_list: Sequence[str], item_filter: BoundFilter | None = None
) -> list[dict[str, Any]]:
    """GetPersonalizedRanking: ``input_list`` ordered for ``user_id`` (filtered items dropped)."""
    recipe = serving.recipe
    if recipe.recipe_type != "PERSONALIZED_RANKING":
        raise InvalidInputError(
            f"GetPersonalizedRanking needs a campaign of a PERSONALIZED_RANKING recipe, not {recipe.name}"
        )
    data = serving.data
    facts = ItemFacts(data.item_fields, data.user_interactions(user_id))
    ranked: list[dict[str, Any]] = []
    for candidate, score in serving.model.rank(user_id, input_list):
        if item_filter is not None and not item_filter.allows(candidate, facts):
            continue
        entry: dict[str, Any] = {"itemId": candidate}
        if score is not None:
            entry["score"] = _score(score)
        ranked.append(entry)
    return ranked
