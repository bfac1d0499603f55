"""Fault injection: error rates, added latency and outage windows, optionally per operation.

Rules come from ``POST /_emulator/faults`` as JSON. Every rule may be scoped to one operation
(``"operation": "PutEvents"``), limited to the next N matching calls (``"count"``) and to a time window
(``"startInSeconds"``, ``"seconds"``). Kinds:

- ``error``: with ``probability`` p (default 1.0) answer ``code``/``status`` (default 500 InternalFailure).
- ``latency``: delay the answer by ``fixedMs`` plus a uniform ``0..jitterMs``.
- ``outage``: for ``seconds`` from now, every matching call answers ``code``/``status``
  (default 503 ServiceUnavailable).

Random draws come from one generator seeded by ``seed``: the same sequence of calls sees the same faults.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

from devstack.personalize.errors import InjectedFaultError

FAULT_KINDS: Final = ("error", "latency", "outage")
#: Error codes the SDKs know for common statuses, used when a rule gives a status but no code.
CODE_FOR_STATUS: Final[Mapping[int, str]] = {
    400: "ThrottlingException",
    404: "ResourceNotFoundException",
    429: "TooManyRequestsException",
    500: "InternalFailure",
    502: "BadGateway",
    503: "ServiceUnavailable",
    504: "GatewayTimeout",
}
#: Statuses for well-known codes, used when a rule gives a code but no status.
STATUS_FOR_CODE: Final[Mapping[str, int]] = {
    "ThrottlingException": 400,
    "InvalidInputException": 400,
    "ResourceInUseException": 400,
    "AccessDeniedException": 403,
    "ResourceNotFoundException": 404,
    "TooManyRequestsException": 429,
    "InternalFailure": 500,
    "InternalServerError": 500,
    "ServiceUnavailable": 503,
    "ServiceUnavailableException": 503,
}
_RULE_KEYS: Final = frozenset(
    {
        "kind",
        "operation",
        "probability",
        "status",
        "code",
        "message",
        "fixedMs",
        "jitterMs",
        "seconds",
        "startInSeconds",
        "count",
    }
)


@dataclass(slots=True)
class FaultRule:
    """One active fault rule; times are on the injector's monotonic clock."""

    id: int
    kind: str
    operation: str | None = None
    probability: float = 1.0
    status: int = 500
    code: str = "InternalFailure"
    message: str = "Injected fault"
    fixed_ms: float = 0.0
    jitter_ms: float = 0.0
    starts_at: float = 0.0
    ends_at: float = math.inf
    remaining: int | None = None
    fired: int = field(default=0)

    def active(self, now: float) -> bool:
        """Whether the rule applies at ``now`` (inside its window, count not used up)."""
        return self.starts_at <= now < self.ends_at and (self.remaining is None or self.remaining > 0)

    def expired(self, now: float) -> bool:
        """Whether the rule can never apply again."""
        return now >= self.ends_at or (self.remaining is not None and self.remaining <= 0)

    def fire(self) -> None:
        """Count one application of the rule."""
        self.fired += 1
        if self.remaining is not None:
            self.remaining -= 1


class FaultDecision(NamedTuple):
    """What to do to one call: wait ``delay`` seconds, then answer ``error`` if it is set."""

    delay: float
    error: InjectedFaultError | None


NO_FAULT: Final = FaultDecision(0.0, None)


def _number(raw: Mapping[str, Any], key: str, default: float, *, lowest: float = 0.0) -> float:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"fault {key!r} must be a finite number, got {value!r}")
    if value < lowest:
        raise ValueError(f"fault {key!r} must be >= {lowest:g}, got {value!r}")
    return float(value)


class FaultInjector:
    """Holds the fault rules and decides, per call, which fault (if any) applies."""

    def __init__(self, seed: int | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._random = random.Random(seed)
        self._next_id = 1
        self.seed = seed
        self.rules: list[FaultRule] = []

    def reseed(self, seed: int | None) -> None:
        """Restart the random sequence from ``seed`` (``None``: from the OS)."""
        self.seed = seed
        self._random = random.Random(seed)

    def clear(self) -> int:
        """Remove every rule; return how many there were."""
        count = len(self.rules)
        self.rules = []
        return count

    def remove(self, rule_id: int) -> bool:
        """Remove one rule by id; return whether it existed."""
        before = len(self.rules)
        self.rules = [rule for rule in self.rules if rule.id != rule_id]
        return len(self.rules) != before

    def parse_rule(self, raw: Mapping[str, Any]) -> FaultRule:
        """Build a rule from its JSON form; raise ``ValueError`` naming the bad key."""
        unknown = set(raw) - _RULE_KEYS
        if unknown:
            raise ValueError(f"unknown fault keys {sorted(unknown)}; known: {sorted(_RULE_KEYS)}")
        kind = raw.get("kind")
        if kind not in FAULT_KINDS:
            raise ValueError(f"fault 'kind' must be one of {list(FAULT_KINDS)}, got {kind!r}")
        operation = raw.get("operation")
        if operation is not None and not isinstance(operation, str):
            raise ValueError(f"fault 'operation' must be an operation name, got {operation!r}")
        now = self._clock()
        starts_at = now + _number(raw, "startInSeconds", 0.0)
        if kind == "outage" and "seconds" not in raw:
            raise ValueError("an outage needs 'seconds'")
        seconds = _number(raw, "seconds", math.inf) if "seconds" in raw else math.inf
        count = raw.get("count")
        if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
            raise ValueError(f"fault 'count' must be a positive integer, got {count!r}")
        rule = FaultRule(
            id=self._next_id,
            kind=kind,
            operation=operation,
            starts_at=starts_at,
            ends_at=starts_at + seconds,
            remaining=count,
        )
        if kind == "latency":
            rule.fixed_ms = _number(raw, "fixedMs", 0.0)
            rule.jitter_ms = _number(raw, "jitterMs", 0.0)
        else:
            probability = _number(raw, "probability", 1.0)
            if probability > 1.0:
                raise ValueError(f"fault 'probability' must be within 0..1, got {probability!r}")
            rule.probability = probability if kind == "error" else 1.0
            default_status = 503 if kind == "outage" else 500
            code = raw.get("code")
            status = raw.get("status")
            if code is not None and not isinstance(code, str):
                raise ValueError(f"fault 'code' must be a string, got {code!r}")
            if status is not None and (
                isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599
            ):
                raise ValueError(f"fault 'status' must be an HTTP error status 400..599, got {status!r}")
            if status is None:
                status = STATUS_FOR_CODE.get(code, default_status) if code else default_status
            rule.status = status
            rule.code = code or CODE_FOR_STATUS.get(status, "InternalFailure")
            message = raw.get("message")
            rule.message = str(message) if message is not None else f"Injected {kind}: {rule.code}"
        self._next_id += 1
        return rule

    def configure(self, payload: Mapping[str, Any]) -> list[FaultRule]:
        """Apply a ``POST /_emulator/faults`` body; return the rules it added.

        Body: ``{"faults": [rule, ...], "seed": int | null, "replace": bool}`` (``replace`` defaults to
        true: the new rules replace the old ones), or a single rule object. Nothing changes on error.
        """
        if "kind" in payload:
            raw_rules: object = [payload]
            replace, seed_given = True, False
        else:
            unknown = set(payload) - {"faults", "seed", "replace"}
            if unknown:
                raise ValueError(f"unknown keys {sorted(unknown)}; expected faults, seed, replace")
            raw_rules = payload.get("faults", [])
            replace = bool(payload.get("replace", True))
            seed_given = "seed" in payload
        if not isinstance(raw_rules, list) or not all(isinstance(rule, dict) for rule in raw_rules):
            raise ValueError("'faults' must be a list of fault objects")
        seed = payload.get("seed")
        if seed_given and seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"'seed' must be an integer or null, got {seed!r}")
        rules = [self.parse_rule(raw) for raw in raw_rules]
        if seed_given:
            self.reseed(seed)
        if replace:
            self.rules = rules
        else:
            self.rules.extend(rules)
        return rules

    def decide(self, operation: str) -> FaultDecision:
        """Decide the fault for one call of ``operation`` (consumes random draws and counts)."""
        if not self.rules:
            return NO_FAULT
        now = self._clock()
        if any(rule.expired(now) for rule in self.rules):
            self.rules = [rule for rule in self.rules if not rule.expired(now)]
        delay = 0.0
        error: InjectedFaultError | None = None
        for rule in self.rules:
            if (rule.operation is not None and rule.operation != operation) or not rule.active(now):
                continue
            if rule.kind == "latency":
                jitter = self._random.uniform(0.0, rule.jitter_ms) if rule.jitter_ms > 0 else 0.0
                delay += (rule.fixed_ms + jitter) / 1000.0
                rule.fire()
            elif error is None and (rule.kind == "outage" or self._random.random() < rule.probability):
                error = InjectedFaultError(rule.code, rule.message, rule.status)
                rule.fire()
        return FaultDecision(delay, error)

    def describe(self) -> list[dict[str, Any]]:
        """The rules as JSON objects, with ``remainingSeconds`` of their window and ``fired`` counts."""
        now = self._clock()
        described: list[dict[str, Any]] = []
        for rule in self.rules:
            entry: dict[str, Any] = {
                "id": rule.id,
                "kind": rule.kind,
                "operation": rule.operation,
                "active": rule.active(now),
                "fired": rule.fired,
                "count": rule.remaining,
                "startInSeconds": max(0.0, rule.starts_at - now),
                "remainingSeconds": None if math.isinf(rule.ends_at) else max(0.0, rule.ends_at - now),
            }
            if rule.kind == "latency":
                entry.update(fixedMs=rule.fixed_ms, jitterMs=rule.jitter_ms)
            else:
                entry.update(probability=rule.probability, status=rule.status, code=rule.code, message=rule.message)
            described.append(entry)
        return described
