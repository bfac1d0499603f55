"""``batch personalize train``: new solution versions, then the campaigns switched over to them.

For each chosen solution: a new version (``trainingMode`` FULL, or UPDATE when asked and the recipe
allows it and an ACTIVE version exists); a version already in progress is adopted, not duplicated.
Once every version is ACTIVE, each campaign serving one of those solutions gets UpdateCampaign to
the new version, and the run waits for the campaign's ``latestCampaignUpdate`` to be ACTIVE. A campaign
keeps serving its old version until then, so the lobby never goes without recommendations.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from batch.errors import ConfigurationError
from batch.personalize.calls import IN_FLIGHT, RaceLostError, describer, listed, newest, service_call
from batch.personalize.config import PersonalizeConfig
from batch.personalize.errors import PersonalizeError
from batch.personalize.outputs import Outputs
from batch.personalize.plan import Ledger, QuietReporter, Reporter, Row
from batch.personalize.waiter import ACTIVE, Pending, StatusWaiter

if TYPE_CHECKING:
    from mypy_boto3_personalize import PersonalizeClient


@dataclass(frozen=True, slots=True)
class Switch:
    """One campaign moved from ``old`` to ``new`` solution version."""

    campaign: str
    campaign_arn: str
    old: str
    new: str


class CampaignTrainer:
    """Trains the chosen solutions of one config and points their campaigns at the new versions."""

    def __init__(
        self,
        client: PersonalizeClient,
        config: PersonalizeConfig,
        waiter: StatusWaiter,
        *,
        update: bool = False,
        reporter: Reporter | None = None,
    ) -> None:
        self.client = client
        self.config = config
        self.waiter = waiter
        self.update = update
        self.reporter = reporter or QuietReporter()
        self.ledger = Ledger()
        self.switches: list[Switch] = []

    def chosen(self, keys: Sequence[str]) -> list[str]:
        """The solution keys to train: ``keys``, or every solution a campaign serves."""
        if not keys:
            return [key for key in self.config.solutions if self.config.campaigns_of(key)]
        unknown = [key for key in keys if key not in self.config.solutions]
        if unknown:
            raise ConfigurationError(
                f"--solution {', '.join(unknown)}: not in the config's solutions ({', '.join(self.config.solutions)})"
            )
        return list(dict.fromkeys(keys))

    def train(self, keys: Sequence[str]) -> list[Switch]:
        chosen = self.chosen(keys)
        group_arn = self._group_arn()
        solutions = listed(self.client.list_solutions, "solutions", "listing solutions", datasetGroupArn=group_arn)
        by_name = {str(entry["name"]): str(entry["solutionArn"]) for entry in solutions}
        pending: dict[str, Pending] = {}
        for key in chosen:
            name = self.config.solutions[key].name
            if name not in by_name:
                raise PersonalizeError(f"solution {name} does not exist: run `batch personalize apply` first")
            pending[key] = self._new_version(key, by_name[name])
        self.reporter.action("training " + ", ".join(self.config.solutions[key].name for key in chosen))
        try:
            self.waiter.wait(list(pending.values()))
        finally:
            self.ledger.settle(self.waiter.seen)

        updates: list[Pending] = []
        for key in chosen:
            for campaign_key, campaign in self.config.campaigns_of(key).items():
                update = self._switch(campaign_key, campaign.name, pending[key].arn)
                if update is not None:
                    updates.append(update)
        if updates:
            self.reporter.action("updating campaigns " + ", ".join(p.label for p in updates))
            try:
                self.waiter.wait(updates)
            finally:
                self.ledger.settle(self.waiter.seen)
        for switch in self.switches:
            with service_call(f"describing campaign {switch.campaign}"):
                serving = self.client.describe_campaign(campaignArn=switch.campaign_arn)["campaign"]
            if serving.get("solutionVersionArn") != switch.new:
                raise PersonalizeError(
                    f"campaign {switch.campaign} serves {serving.get('solutionVersionArn')} after its update to "
                    f"{switch.new}"
                )
        return self.switches

    def _group_arn(self) -> str:
        name = self.config.dataset_group.name
        groups = listed(self.client.list_dataset_groups, "datasetGroups", "listing dataset groups")
        for group in groups:
            if group.get("name") == name:
                return str(group["datasetGroupArn"])
        raise PersonalizeError(f"dataset group {name} does not exist: run `batch personalize apply` first")

    def _versions(self, solution_arn: str) -> list[dict[str, Any]]:
        return listed(
            self.client.list_solution_versions,
            "solutionVersions",
            "listing solution versions",
            solutionArn=solution_arn,
        )

    def _new_version(self, key: str, solution_arn: str) -> Pending:
        spec = self.config.solutions[key]
        client = self.client
        versions = self._versions(solution_arn)
        running = newest([version for version in versions if version.get("status") in IN_FLIGHT])
        mode: Literal["FULL", "UPDATE"] = "FULL"
        if self.update and spec.allows_update and any(version.get("status") == ACTIVE for version in versions):
            mode = "UPDATE"
        if running is None:
            try:
                with service_call(f"creating a solution version of {spec.name}"):
                    arn = client.create_solution_version(solutionArn=solution_arn, trainingMode=mode)[
                        "solutionVersionArn"
                    ]
                note = f"training {mode}"
                if self.update and mode == "FULL":
                    note += f" ({spec.recipe_name} cannot train UPDATE)" if not spec.allows_update else ""
                self.ledger.add(Row("solution version", spec.name, arn, "created", "CREATE PENDING", note))
                self.reporter.action(f"solution version of {spec.name}: created ({note})")
            except RaceLostError:
                running = newest([v for v in self._versions(solution_arn) if v.get("status") in IN_FLIGHT])
                if running is None:
                    raise PersonalizeError(
                        f"creating a solution version of {spec.name}: in use, yet none is in progress"
                    ) from None
        if running is not None:
            arn = str(running["solutionVersionArn"])
            self.ledger.add(Row("solution version", spec.name, arn, "waited", str(running["status"]), "was running"))
            self.reporter.action(f"solution version of {spec.name}: one is already in progress, waiting for it")
        label = f"solution version of {spec.name}"
        return Pending(
            label,
            arn,
            describer(
                lambda: dict(client.describe_solution_version(solutionVersionArn=arn)["solutionVersion"]),
                f"describing {label}",
            ),
        )

    def _switch(self, key: str, name: str, version_arn: str) -> Pending | None:
        """UpdateCampaign to ``version_arn`` (after an update in progress, if any); ``None`` if it serves it."""
        client = self.client
        campaigns = listed(client.list_campaigns, "campaigns", "listing campaigns")
        entry = next((campaign for campaign in campaigns if campaign.get("name") == name), None)
        if entry is None:
            raise PersonalizeError(f"campaign {name} does not exist: run `batch personalize apply` first")
        arn = str(entry["campaignArn"])

        def latest_update() -> dict[str, Any] | None:
            campaign = client.describe_campaign(campaignArn=arn)["campaign"]
            return dict(campaign.get("latestCampaignUpdate") or {"status": campaign.get("status", "")})

        label = f"campaign update {name}"
        update = describer(latest_update, f"describing {label}")
        with service_call(f"describing campaign {name}"):
            campaign = client.describe_campaign(campaignArn=arn)["campaign"]
        old = str(campaign["solutionVersionArn"])
        if old == version_arn:
            self.reporter.action(f"campaign {name} already serves {version_arn}")
            return None
        if not update().settled:
            self.reporter.action(f"campaign {name}: an update is in progress, waiting for it first")
            self.waiter.wait([Pending(label, arn, update)])
        try:
            with service_call(f"updating campaign {name}"):
                client.update_campaign(campaignArn=arn, solutionVersionArn=version_arn)
        except RaceLostError as lost:
            raise PersonalizeError(f"updating campaign {name}: {lost}") from None
        self.ledger.add(Row("campaign", name, arn, "updated", "UPDATE PENDING", f"-> {version_arn}"))
        self.switches.append(Switch(key, arn, old, version_arn))
        return Pending(label, arn, update)


def read_outputs(client: PersonalizeClient, config: PersonalizeConfig, role_arn: str | None) -> Outputs:
    """The outputs of an applied config, read from the service (nothing is created)."""
    outputs = Outputs(role_arn=role_arn)
    groups = listed(client.list_dataset_groups, "datasetGroups", "listing dataset groups")
    group = next((g for g in groups if g.get("name") == config.dataset_group.name), None)
    if group is None:
        raise PersonalizeError(f"dataset group {config.dataset_group.name} does not exist")
    outputs.dataset_group_arn = group_arn = str(group["datasetGroupArn"])
    datasets = listed(client.list_datasets, "datasets", "listing datasets", datasetGroupArn=group_arn)
    outputs.datasets = {str(d["datasetType"]).upper(): str(d["datasetArn"]) for d in datasets}
    trackers = listed(client.list_event_trackers, "eventTrackers", "listing event trackers", datasetGroupArn=group_arn)
    if trackers:
        outputs.event_tracker_arn = str(trackers[0]["eventTrackerArn"])
        with service_call("describing the event tracker"):
            tracker = client.describe_event_tracker(eventTrackerArn=outputs.event_tracker_arn)["eventTracker"]
        outputs.tracking_id = str(tracker.get("trackingId", ""))
    filters = {
        str(f["name"]): str(f["filterArn"])
        for f in listed(client.list_filters, "Filters", "listing filters", datasetGroupArn=group_arn)
    }
    outputs.filters = {key: filters[spec.name] for key, spec in config.filters.items() if spec.name in filters}
    solutions = {
        str(s["name"]): str(s["solutionArn"])
        for s in listed(client.list_solutions, "solutions", "listing solutions", datasetGroupArn=group_arn)
    }
    outputs.solutions = {key: solutions[s.name] for key, s in config.solutions.items() if s.name in solutions}
    campaigns = {
        str(c["name"]): str(c["campaignArn"]) for c in listed(client.list_campaigns, "campaigns", "listing campaigns")
    }
    for key, spec in config.campaigns.items():
        if spec.name not in campaigns:
            continue
        outputs.campaigns[key] = campaigns[spec.name]
        with service_call(f"describing campaign {spec.name}"):
            served = client.describe_campaign(campaignArn=campaigns[spec.name])["campaign"]
        outputs.solution_versions[spec.solution] = str(served["solutionVersionArn"])
    return outputs
