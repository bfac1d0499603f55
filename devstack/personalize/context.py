"""The shared objects every router of the emulator works on."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from devstack.personalize.faults import FaultInjector
from devstack.personalize.state import Store


@dataclass(slots=True)
class Emulator:
    """One emulator instance: its state, its fault injector and when it started (epoch seconds)."""

    store: Store
    faults: FaultInjector
    started_at: float = field(default_factory=time.time)
