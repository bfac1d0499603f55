"""What the lobby shows a player: rows of games drawn from the catalog's popularity at a given time."""

from __future__ import annotations

import bisect
import itertools
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Final

from clickstream.generator.catalog import Catalog, Game

#: Weights are recomputed every this many days of simulated time (trending games grow in steps).
BUCKET_DAYS: Final = 0.25
#: A game released this recently is shown in "new-releases".
NEW_RELEASE_DAYS: Final = 120
#: How much more likely a trending game is to appear in the "trending" row.
TRENDING_BOOST: Final = 25.0

#: Lobby rows filled from Personalize campaigns: a click on them may carry a recommendation id.
RECOMMENDED_SECTIONS: Final = frozenset({"for-you", "because-you-played", "popular", "trending"})


@dataclass(frozen=True, slots=True)
class Shelf:
    """Games with cumulative weights, for weighted sampling without replacement."""

    ids: tuple[str, ...]
    cumulative: tuple[float, ...]

    def __len__(self) -> int:
        return len(self.ids)

    def pick(self, rng: random.Random) -> str:
        point = rng.random() * self.cumulative[-1]
        return self.ids[bisect.bisect_right(self.cumulative, point)]

    def sample(self, rng: random.Random, k: int, exclude: Sequence[str] = ()) -> list[str]:
        """Up to ``k`` distinct ids by weight, none of ``exclude``; fewer if the shelf runs out."""
        chosen: list[str] = []
        seen = set(exclude)
        available = sum(1 for i in self.ids if i not in seen)
        want = min(k, available)
        attempts = 0
        while len(chosen) < want and attempts < 8 * k + 16:
            attempts += 1
            game_id = self.pick(rng)
            if game_id not in seen:
                seen.add(game_id)
                chosen.append(game_id)
        if len(chosen) < want:  # heavy skew: fill from the top of the shelf deterministically
            chosen.extend(i for i in self.ids if i not in seen)
            chosen = chosen[:want]
        return chosen


def _shelf(games: Sequence[Game], weight: Callable[[Game], float]) -> Shelf | None:
    pairs = [(g.game_id, weight(g)) for g in games]
    pairs = [(i, w) for i, w in pairs if w > 0]
    if not pairs:
        return None
    return Shelf(tuple(i for i, _ in pairs), tuple(itertools.accumulate(w for _, w in pairs)))


class Lobby:
    """Shelves of games per (country, time bucket, row kind), built on demand and forgotten as time moves.

    ``days`` is simulated time since the start of the generation; it only ever drifts forward, so only
    the shelves of the two latest buckets are kept.
    """

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._shelves: dict[tuple[str, int, str], Shelf | None] = {}
        self._latest_bucket = 0
        self._new_since = catalog.as_of - timedelta(days=NEW_RELEASE_DAYS)

    def shelf(self, country: str, days: float, kind: str) -> Shelf | None:
        """``kind`` is ``all``, ``trending``, ``new`` or a category; None if nothing qualifies."""
        bucket = int(days / BUCKET_DAYS)
        key = (country, bucket, kind)
        if key in self._shelves:
            return self._shelves[key]
        if bucket > self._latest_bucket:
            self._latest_bucket = bucket
            self._shelves = {k: v for k, v in self._shelves.items() if k[1] >= bucket - 1}
        at = bucket * BUCKET_DAYS
        games = [g for g in self.catalog.games if g.enabled and country in g.jurisdictions]
        if kind == "all":
            shelf = _shelf(games, lambda g: g.weight_at(at))
        elif kind == "trending":
            shelf = _shelf(games, lambda g: g.weight_at(at) * (TRENDING_BOOST if g.trending else 1.0))
        elif kind == "new":
            shelf = _shelf([g for g in games if g.release_date >= self._new_since], lambda g: g.weight_at(at))
        else:
            shelf = _shelf([g for g in games if g.category == kind], lambda g: g.weight_at(at))
        self._shelves[key] = shelf
        return shelf
