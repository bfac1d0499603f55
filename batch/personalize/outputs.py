"""What the stream worker, PAM and ``batch similar`` need from the Personalize resources, as JSON.

``--outputs FILE`` of ``batch personalize apply`` and ``train`` writes::

    {
      "version": 1,
      "datasetGroupArn": "arn:aws:personalize:...:dataset-group/patron-lobby",
      "roleArn": "arn:aws:iam::...:role/..." | null,
      "trackingId": "...",                      # STREAM_WORKER_TRACKING_ID
      "eventTrackerArn": "...",
      "datasets": {"INTERACTIONS": arn, "ITEMS": arn, "USERS": arn},
      "filters": {"unavailable": arn},          # keys of the config's `filters`
      "solutions": {"sims": arn, ...},          # keys of the config's `solutions`
      "solutionVersions": {"sims": arn, ...},   # per solution: the version its campaign serves
      "campaigns": {"sims": arn, "popularity": arn, "trending": arn, "for_you": arn}
    }
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from batch.errors import SinkError

OUTPUTS_VERSION: Final = 1


@dataclass(slots=True)
class Outputs:
    """The ARNs and tracking id of one applied config."""

    dataset_group_arn: str = ""
    role_arn: str | None = None
    tracking_id: str = ""
    event_tracker_arn: str = ""
    datasets: dict[str, str] = field(default_factory=dict)
    filters: dict[str, str] = field(default_factory=dict)
    solutions: dict[str, str] = field(default_factory=dict)
    solution_versions: dict[str, str] = field(default_factory=dict)
    campaigns: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": OUTPUTS_VERSION,
            "datasetGroupArn": self.dataset_group_arn,
            "roleArn": self.role_arn,
            "trackingId": self.tracking_id,
            "eventTrackerArn": self.event_tracker_arn,
            "datasets": dict(self.datasets),
            "filters": dict(self.filters),
            "solutions": dict(self.solutions),
            "solutionVersions": dict(self.solution_versions),
            "campaigns": dict(self.campaigns),
        }

    def write(self, path: Path) -> None:
        """Write the JSON atomically (a reader never sees half a file)."""
        body = json.dumps(self.to_json(), indent=2) + "\n"
        partial = path.with_name(path.name + ".partial")
        try:
            partial.write_text(body, encoding="utf-8")
            partial.replace(path)
        except OSError as exc:
            raise SinkError(f"cannot write the outputs to {path}: {exc.strerror}") from None

    def lines(self) -> list[str]:
        """The values an operator copies into the worker's and PAM's settings."""
        lines = [f"tracking id:       {self.tracking_id}", f"dataset group:     {self.dataset_group_arn}"]
        lines.extend(f"campaign {key + ':':<9} {arn}" for key, arn in self.campaigns.items())
        lines.extend(f"filter {key + ':':<11} {arn}" for key, arn in self.filters.items())
        lines.extend(f"version {key + ':':<10} {arn}" for key, arn in self.solution_versions.items())
        return lines
