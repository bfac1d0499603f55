"""The local recipes and filters on data with a known answer (no emulator, no network)."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import pytest

from devstack.personalize.filters import FieldValue, FilterError, ItemFacts, parse_filter
from devstack.personalize.recipes import RECIPES, Interaction, ParameterError, recipe_for
from devstack.personalize.recipes.base import Model
from devstack.personalize.recipes.popularity import train as train_popularity
from devstack.personalize.recipes.sims import SimsParameters
from devstack.personalize.recipes.sims import train as train_sims
from devstack.personalize.recipes.trending import TrendingModel, TrendingParameters
from devstack.personalize.recipes.trending import train as train_trending
from devstack.personalize.recipes.user_personalization import UserPersonalizationParameters
from devstack.personalize.recipes.user_personalization import train as train_user_personalization

T0 = 1_717_000_000.0
HOUR = 3600.0


def top(model: Model, n: int = 3, **query: str) -> list[str]:
    """The first ``n`` item ids the model recommends for ``query``."""
    return [item_id for item_id, _ in itertools.islice(model.ranked(**query), n)]


def clustered_plays() -> list[Interaction]:
    """Known answer: each player plays one pair of games that always go together, plus the hit game.

    Pairs: (slots-a, slots-b), (poker-a, poker-b), (bingo-a, bingo-b); 30 players per pair; every
    player also plays ``hit`` (so it co-occurs with everything, but only because it is everywhere).
    """
    plays: list[Interaction] = []
    pairs = [("slots-a", "slots-b"), ("poker-a", "poker-b"), ("bingo-a", "bingo-b")]
    clock = itertools.count()
    for group, (first, second) in enumerate(pairs):
        for player in range(30):
            user = f"u{group}-{player}"
            for game in (first, second, "hit"):
                plays.append(Interaction(user, game, T0 + next(clock), "play"))
    return plays


# -------------------------------------------------------------------------------------------- SIMS


def test_games_played_together_are_each_others_top_sims_result() -> None:
    model = train_sims(clustered_plays(), SimsParameters())
    assert top(model, 1, item_id="slots-a") == ["slots-b"]
    assert top(model, 1, item_id="slots-b") == ["slots-a"]
    assert top(model, 1, item_id="poker-a") == ["poker-b"]
    assert top(model, 1, item_id="bingo-b") == ["bingo-a"]


def test_sims_discounts_the_game_everyone_plays() -> None:
    # hit co-occurs with slots-a as often as slots-b does (30 users), but it is 3x as popular.
    model = train_sims(clustered_plays(), SimsParameters(popularity_discount_factor=0.5))
    scores = dict(model.similarity("slots-a"))
    assert scores["slots-b"] == pytest.approx(1.0)
    assert scores["hit"] == pytest.approx(30 / (30**0.5 * 90**0.5))
    # Without a discount, co(i, j) / pop(i) ties them; the tie goes to the smaller id.
    undiscounted = dict(
        train_sims(clustered_plays(), SimsParameters(popularity_discount_factor=0.0)).similarity("slots-a")
    )
    assert undiscounted["slots-b"] == pytest.approx(undiscounted["hit"])


def test_sims_never_returns_the_query_item_and_each_item_once() -> None:
    model = train_sims(clustered_plays(), SimsParameters())
    everything = top(model, 50, item_id="poker-a")
    assert "poker-a" not in everything
    assert len(everything) == len(set(everything)) == 6


def test_sims_minimum_co_interaction_count_falls_back_to_popular() -> None:
    plays = [*clustered_plays(), Interaction("loner-1", "rare-a", T0), Interaction("loner-1", "rare-b", T0 + 1)]
    model = train_sims(plays, SimsParameters(min_cointeraction_count=3))
    # rare-a and rare-b co-occur once only: below the minimum, so rare-a gets the popular games.
    assert model.similarity("rare-a") == []
    assert top(model, 1, item_id="rare-a") == ["hit"]
    assert top(model, 1, item_id="not-in-the-catalog") == ["hit"]
    lenient = train_sims(plays, SimsParameters(min_cointeraction_count=1))
    assert top(lenient, 1, item_id="rare-a") == ["rare-b"]


def test_sims_hyperparameters_are_checked() -> None:
    assert SimsParameters.parse({"popularity_discount_factor": "0.2"}).popularity_discount_factor == 0.2
    with pytest.raises(ParameterError, match="popularity_discount_factor"):
        SimsParameters.parse({"popularity_discount_factor": "2"})
    with pytest.raises(ParameterError, match="min_cointeraction_count"):
        SimsParameters.parse({"min_cointeraction_count": "many"})


# -------------------------------------------------------------------------------------- popularity


def test_the_most_played_game_is_top_popular() -> None:
    plays = clustered_plays()
    # One player hammering a game 500 times does not make it popular: distinct users count.
    plays += [Interaction("grinder", "grind", T0 + n) for n in range(500)]
    model = train_popularity(plays)
    assert top(model, 1) == ["hit"]
    assert model.popularity.users_per_item["hit"] == 90
    assert model.popularity.users_per_item["grind"] == 1
    assert top(model, 99)[-1] == "grind"


# ---------------------------------------------------------------------------------------- trending


def plays_per_interval(counts: dict[str, tuple[int, int]], interval: float = HOUR) -> list[Interaction]:
    """For each game, ``before`` plays spread over one interval, then ``now`` plays over the next."""
    plays: list[Interaction] = []
    for game, (before, now) in counts.items():
        for index in range(before):
            plays.append(Interaction(f"p-{game}-{index}", game, T0 + interval * (index + 0.5) / before))
        for index in range(now):
            plays.append(Interaction(f"q-{game}-{index}", game, T0 + interval + interval * (index + 0.5) / now))
    return plays


def test_a_game_whose_plays_double_between_intervals_is_top_trending() -> None:
    plays = plays_per_interval({"doubler": (20, 40), "steady": (100, 100), "sparkle": (0, 2), "big": (1000, 1100)})
    model = train_trending(plays, TrendingParameters(interval_seconds=HOUR))
    assert model.counts("doubler") == (20, 40)
    # steady has no growth: it comes after the rising games.
    assert top(model, 4) == ["doubler", "big", "sparkle", "steady"]


def test_trending_is_updated_by_streamed_events_without_retraining() -> None:
    plays = plays_per_interval({"doubler": (20, 40), "steady": (100, 100)})
    model = train_trending(plays, TrendingParameters(interval_seconds=HOUR))
    assert top(model, 1) == ["doubler"]
    # An hour later a new game takes off; the intervals slide with the latest event.
    later = T0 + 2 * HOUR
    for index in range(30):
        model.observe(Interaction(f"fan-{index}", "newcomer", later + 60 + index, "play"))
    assert top(model, 1) == ["newcomer"]
    assert model.counts("newcomer") == (0, 30)


def test_trending_interval_comes_from_the_trend_discovery_frequency() -> None:
    assert TrendingParameters.parse({"trend_discovery_frequency": "30 minutes"}).interval_seconds == 1800
    assert TrendingParameters.parse({}).interval_seconds == 86400
    with pytest.raises(ParameterError, match="trend_discovery_frequency"):
        TrendingParameters.parse({"trend_discovery_frequency": "2 weeks"})


def test_trending_without_recent_interactions_recommends_popular_items() -> None:
    model = TrendingModel([Interaction("a", "old", T0), Interaction("b", "old", T0 + 1)], TrendingParameters())
    assert top(model, 1) == ["old"]


# ------------------------------------------------------------------------------ user personalization


def test_a_user_who_just_streamed_plays_of_a_game_gets_its_neighbours_on_top() -> None:
    plays = clustered_plays()
    plays += [Interaction("newbie", "slots-a", T0 + 10_000), Interaction("newbie", "slots-b", T0 + 10_001)]
    model = train_user_personalization(plays, UserPersonalizationParameters())
    assert top(model, 1, user_id="newbie")[0] in {"slots-a", "slots-b", "hit"}
    assert "poker-b" not in top(model, 3, user_id="newbie")
    # The player now plays poker-a (streamed, no retraining): poker-b comes first.
    model.observe(Interaction("newbie", "poker-a", T0 + 20_000, "play"))
    assert top(model, 1, user_id="newbie") == ["poker-b"]


def test_user_personalization_cold_start_is_popular_and_scores_share_one() -> None:
    model = train_user_personalization(clustered_plays(), UserPersonalizationParameters())
    assert top(model, 1, user_id="never-seen") == ["hit"]
    scored = list(model.ranked(user_id="u0-1"))
    scores = [score for _, score in scored]
    assert all(score is not None for score in scores)
    values = [float(score) for score in scores if score is not None]
    assert values == sorted(values, reverse=True)
    assert sum(values) == pytest.approx(1.0)
    assert len(scored) == 7


def test_personalized_ranking_orders_the_given_items() -> None:
    model = train_user_personalization(clustered_plays(), UserPersonalizationParameters())
    ranking = model.rank("u1-3", ["bingo-a", "poker-b", "unknown-game"])
    assert [item for item, _ in ranking] == ["poker-b", "bingo-a", "unknown-game"]
    assert sum(score or 0.0 for _, score in ranking) == pytest.approx(1.0)


def test_recipe_catalogue_trains_every_recipe() -> None:
    plays = clustered_plays()
    for recipe in RECIPES.values():
        model = recipe.train(plays, {})
        assert top(model, 1, user_id="u0-0", item_id="slots-a"), recipe.name
        assert model.scored == (recipe.name.startswith(("aws-user-personalization", "aws-personalized-ranking")))
    sims = recipe_for("arn:aws:personalize:::recipe/aws-sims")
    assert sims is not None and sims.recipe_type == "RELATED_ITEMS"
    with pytest.raises(ParameterError):
        sims.train(plays, {"popularity_discount_factor": "-1"})


# ------------------------------------------------------------------------------------------ filters


def catalog() -> dict[str, dict[str, FieldValue]]:
    return {
        "g-1": {"AVAILABLE": "true", "GENRES": ("slots", "classic"), "RTP": 96.5},
        "g-2": {"AVAILABLE": "false", "GENRES": ("poker",), "RTP": 99.0},
        "g-3": {"AVAILABLE": "true", "GENRES": ("bingo",), "RTP": 92.0},
        "g-4": {"GENRES": ("slots",)},
    }


def allowed(
    expression: str,
    values: dict[str, str] | None = None,
    played: Mapping[str, Sequence[tuple[str, float | None]]] | None = None,
) -> list[str]:
    """The catalogue's items the filter lets through (``played``: the requesting user's interactions)."""
    items = catalog()
    bound = parse_filter(expression).bind(values)
    facts = ItemFacts(items.get, played)
    return [item_id for item_id in items if bound.allows(item_id, facts)]


def test_filter_excludes_unavailable_items() -> None:
    assert allowed('EXCLUDE ItemID WHERE Items.AVAILABLE IN ("false")') == ["g-1", "g-3", "g-4"]
    assert allowed('INCLUDE ItemID WHERE Items.AVAILABLE IN ("true")') == ["g-1", "g-3"]


def test_filter_placeholders_bind_filter_values() -> None:
    expression = "EXCLUDE ItemID WHERE Items.ITEM_ID IN ($ids)"
    assert allowed(expression, {"ids": '"g-1","g-3"'}) == ["g-2", "g-4"]
    # No value for the placeholder: the condition is left out, so nothing is excluded.
    assert allowed(expression) == ["g-1", "g-2", "g-3", "g-4"]
    with pytest.raises(FilterError, match="comma-separated"):
        parse_filter(expression).bind({"ids": "g-1"})
    with pytest.raises(FilterError, match="does not use"):
        parse_filter(expression).bind({"other": '"x"'})


def test_filter_categorical_numbers_and_boolean_logic() -> None:
    assert allowed('INCLUDE ItemID WHERE Items.GENRES IN ("slots")') == ["g-1", "g-4"]
    assert allowed("INCLUDE ItemID WHERE Items.RTP >= 96") == ["g-1", "g-2"]
    assert allowed('INCLUDE ItemID WHERE Items.RTP > 95 AND Items.GENRES IN ("poker")') == ["g-2"]
    assert allowed('INCLUDE ItemID WHERE Items.GENRES IN ("bingo") OR Items.RTP > 98') == ["g-2", "g-3"]
    chained = 'EXCLUDE ItemID WHERE Items.AVAILABLE IN ("false") | INCLUDE ItemID WHERE Items.GENRES IN ("slots")'
    assert allowed(chained) == ["g-1", "g-4"]


def test_filter_on_the_users_own_interactions() -> None:
    played = {"g-2": [("play", None)], "g-3": [("click", None)]}
    assert allowed('EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("play")', played=played) == ["g-1", "g-3", "g-4"]
    assert allowed('EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("*")', played=played) == ["g-1", "g-4"]


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("EXCLUDE ItemID", "WHERE"),
        ('EXCLUDE ItemID WHERE Users.AGE IN ("1")', "not supported"),
        ('INCLUDE UserID WHERE Users.AGE IN ("1")', "user segment"),
        ('EXCLUDE ItemID WHERE Items.GENRE IN "x"', "parenthesised"),
        ('SELECT ItemID WHERE Items.GENRE IN ("x")', "EXCLUDE or INCLUDE"),
        ('EXCLUDE ItemID WHERE Items.RTP > "high"', "compares numbers"),
        ('EXCLUDE ItemID WHERE Interactions.DEVICE IN ("x")', "not supported"),
    ],
)
def test_bad_filter_expressions_are_refused(expression: str, message: str) -> None:
    with pytest.raises(FilterError, match=message):
        parse_filter(expression)
