"""Amazon Personalize limits that every event we send must respect (see DESIGN.md, "Contracts")."""

from __future__ import annotations

import re
from typing import Final

MAX_EVENTS_PER_CALL: Final = 10
MAX_ID_LENGTH: Final = 256
MAX_EVENT_TYPE_LENGTH: Final = 256
MAX_RECOMMENDATION_ID_LENGTH: Final = 40
MAX_IMPRESSION_IDS: Final = 25
MAX_PROPERTIES_LENGTH: Final = 1024
#: PutEvents requests per second per dataset group (one event tracker per group).
PUT_EVENTS_QUOTA_PER_SECOND: Final = 1000

#: Keys that may not appear in an event's ``properties`` JSON.
RESERVED_PROPERTY_KEYS: Final = frozenset(
    {"userId", "sessionId", "eventType", "timestamp", "recommendationId", "impression"}
)
PROPERTY_KEY_PATTERN: Final = re.compile(r"^[a-z][a-zA-Z0-9]*$")

#: Dataset minimums for training.
MIN_INTERACTIONS: Final = 1000
MIN_USERS_WITH_TWO_INTERACTIONS: Final = 25
