"""The shared objects every router of the emulator works on."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from devstack.personalize.faults import FaultInjector
from devstack.personalize.state import Store

if TYPE_CHECKING:
    from devstack.personalize.control.plane import ControlPlane


@dataclass(slots=True)
class Emulator:
    """One emulator instance: its state, its fault injector, when it started (epoch seconds), and the
    control plane (resources, models) once the app is built with one."""

    store: Store
    faults: FaultInjector
    started_at: float = field(default_factory=time.time)
    control: ControlPlane | None = None
