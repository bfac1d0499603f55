"""Item-to-item co-occurrence in user histories, shared by SIMS and User-Personalization.

``co(i, j)`` is the number of users whose history holds both items; ``pop(i)`` the number of users
whose history holds ``i``. The similarity of ``j`` to a query item ``i`` discounts popular items::

    sim(i -> j) = co(i, j) / (pop(i) ** (1 - d) * pop(j) ** d)

``d`` (0..1) is the popularity discount: 0 ranks neighbours by ``P(j | i)`` (popular items win), 1 by
``P(i | j)`` (popular items are discounted fully), 0.5 is the cosine similarity. Every value is in 0..1.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CoOccurrence:
    """Counts over a set of histories: ``pop[item]`` and ``co[a][b]`` (symmetric, no diagonal)."""

    pop: dict[str, int]
    co: dict[str, dict[str, int]]

    @classmethod
    def count(cls, histories: Mapping[str, Sequence[str]]) -> CoOccurrence:
        """Count distinct items of each user's history (every history should already be distinct)."""
        index: dict[str, int] = {}
        names: list[str] = []
        pair_counts: dict[int, int] = {}
        pop_counts: dict[int, int] = {}
        for items in histories.values():
            numbers: set[int] = set()
            for item in items:
                number = index.get(item)
                if number is None:
                    number = index[item] = len(names)
                    names.append(item)
                numbers.add(number)
            ids = sorted(numbers)
            width = len(ids)
            for position, first in enumerate(ids):
                pop_counts[first] = pop_counts.get(first, 0) + 1
                base = first << 32
                for second in ids[position + 1 : width]:
                    key = base | second
                    pair_counts[key] = pair_counts.get(key, 0) + 1
        co: dict[str, dict[str, int]] = {}
        mask = (1 << 32) - 1
        for key, count in pair_counts.items():
            left, right = names[key >> 32], names[key & mask]
            co.setdefault(left, {})[right] = count
            co.setdefault(right, {})[left] = count
        return cls(pop={names[item]: count for item, count in pop_counts.items()}, co=co)

    def neighbours(self, *, discount: float, min_count: int, limit: int) -> dict[str, list[tuple[str, float]]]:
        """Each item's most similar items (``co >= min_count``), best first, at most ``limit`` of them."""
        pop = self.pop
        result: dict[str, list[tuple[str, float]]] = {}
        for item, partners in self.co.items():
            base = pop[item] ** (1.0 - discount)
            scored = [
                (count / (base * pop[other] ** discount), other)
                for other, count in partners.items()
                if count >= min_count
            ]
            if not scored:
                continue
            scored.sort(key=lambda pair: (-pair[0], pair[1]))
            result[item] = [(other, score) for score, other in scored[:limit]]
        return result
