"""The local recipes: honest, small, plain-Python stand-ins for Personalize's predefined recipes.

Each recipe has the real name, ARN and type; :func:`train` builds its model from interactions and the
solution's hyperparameters. The algorithms (see each module's docstring for its formula):

- ``aws-sims`` (:mod:`.sims`): item-to-item co-occurrence with a popularity discount.
- ``aws-popularity-count`` (:mod:`.popularity`): distinct users per item.
- ``aws-trending-now`` (:mod:`.trending`): growth between the last two intervals, updated by streamed events.
- ``aws-user-personalization``, ``aws-user-personalization-v2`` and ``aws-personalized-ranking(-v2)``
  (:mod:`.user_personalization`): item neighbours aggregated over the user's recent history, updated by
  the user's streamed events.

This package imports nothing of the emulator: the unit tests drive it directly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from devstack.personalize.recipes import popularity, sims, trending, user_personalization
from devstack.personalize.recipes.base import Interaction, Model, ParameterError, ScoredItem

RecipeType = Literal["USER_PERSONALIZATION", "RELATED_ITEMS", "PERSONALIZED_RANKING"]
RECIPE_ARN_PREFIX: Final = "arn:aws:personalize:::recipe/"


@dataclass(frozen=True, slots=True)
class Recipe:
    """A predefined recipe: what DescribeRecipe tells, and whether batch inference supports it."""

    name: str
    recipe_type: RecipeType
    description: str
    feature_transformation: str
    batch: bool = True

    @property
    def arn(self) -> str:
        """``arn:aws:personalize:::recipe/<name>``."""
        return RECIPE_ARN_PREFIX + self.name

    @property
    def algorithm_arn(self) -> str:
        """``arn:aws:personalize:::algorithm/<name>``."""
        return f"arn:aws:personalize:::algorithm/{self.name}"

    @property
    def feature_transformation_arn(self) -> str:
        """``arn:aws:personalize:::feature-transformation/<...>``."""
        return f"arn:aws:personalize:::feature-transformation/{self.feature_transformation}"

    def parameters(self, config: Mapping[str, str]) -> object:
        """Parse (and so validate) the hyperparameters; raise :class:`ParameterError` on a bad value."""
        name = self.name
        if name == "aws-sims":
            return sims.SimsParameters.parse(config)
        if name == "aws-trending-now":
            return trending.TrendingParameters.parse(config)
        if name in ("aws-user-personalization", "aws-personalized-ranking"):
            return user_personalization.UserPersonalizationParameters.parse(config, version=1)
        if name in ("aws-user-personalization-v2", "aws-personalized-ranking-v2"):
            return user_personalization.UserPersonalizationParameters.parse(config, version=2)
        return None

    def train(self, interactions: Sequence[Interaction], config: Mapping[str, str]) -> Model:
        """Train this recipe's model on ``interactions`` with hyperparameters ``config``."""
        params = self.parameters(config)
        if isinstance(params, sims.SimsParameters):
            return sims.train(interactions, params)
        if isinstance(params, trending.TrendingParameters):
            return trending.train(interactions, params)
        if isinstance(params, user_personalization.UserPersonalizationParameters):
            return user_personalization.train(interactions, params)
        return popularity.train(interactions)


RECIPES: Final[Mapping[str, Recipe]] = {
    recipe.arn: recipe
    for recipe in (
        Recipe(
            "aws-sims",
            "RELATED_ITEMS",
            "Item-to-item similarities: items that co-occur in user histories, popular items discounted.",
            "sims",
        ),
        Recipe(
            "aws-popularity-count",
            "USER_PERSONALIZATION",
            "The items with the most distinct users, the same for every user.",
            "sims",
        ),
        Recipe(
            "aws-trending-now",
            "USER_PERSONALIZATION",
            "Items whose interactions grow fastest between the last two intervals.",
            "trending-now",
            batch=False,
        ),
        Recipe(
            "aws-user-personalization",
            "USER_PERSONALIZATION",
            "Items for a user from the neighbours of their recent items, updated by their streamed events.",
            "JSON-percentile-filtering",
        ),
        Recipe(
            "aws-user-personalization-v2",
            "USER_PERSONALIZATION",
            "Items for a user from the neighbours of their recent items, updated by their streamed events.",
            "user-personalization-v2",
        ),
        Recipe(
            "aws-personalized-ranking",
            "PERSONALIZED_RANKING",
            "A user's ranking of given items, by the User-Personalization scores.",
            "JSON-percentile-filtering",
        ),
        Recipe(
            "aws-personalized-ranking-v2",
            "PERSONALIZED_RANKING",
            "A user's ranking of given items, by the User-Personalization scores.",
            "personalized-ranking-v2",
        ),
    )
}


def recipe_for(arn: str) -> Recipe | None:
    """The recipe with ``arn`` (or ``None``)."""
    return RECIPES.get(arn)


__all__ = ["RECIPES", "Interaction", "Model", "ParameterError", "Recipe", "RecipeType", "ScoredItem", "recipe_for"]
