"""Control-plane operations on models: recipes, solutions (and automatic training), solution versions,
campaigns.

Training (CreateSolutionVersion) snapshots the dataset group's interactions (imported + streamed),
keeps those the solution trains on (``eventType``, ``eventValueThreshold``, ``eventsConfig``), checks
the service's minimums (1000 interactions, 25 users with 2 or more), trains the recipe in a worker
thread, then replays what was streamed meanwhile into realtime models.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import Sequence
from typing import Any, Final

from devstack.personalize.control.plane import ControlPlane, JobFailedError, accepts, paginate
from devstack.personalize.control.resources import (
    ACTIVE,
    CREATE_FAILED,
    IN_FLIGHT,
    UPDATE_IN_PROGRESS,
    UPDATE_PENDING,
    Campaign,
    Dataset,
    DatasetGroup,
    Solution,
    SolutionVersion,
)
from devstack.personalize.errors import InvalidInputError, ResourceInUseError, ResourceNotFoundError
from devstack.personalize.recipes import RECIPES, Interaction, ParameterError, Recipe, recipe_for

logger = logging.getLogger("devstack.personalize.control")

Body = dict[str, Any]
MIN_INTERACTIONS: Final = 1000
MIN_USERS: Final = 25
MIN_USER_INTERACTIONS: Final = 2
SCHEDULE: Final = re.compile(r"rate\((\d+) days?\)")
DEFAULT_SCHEDULE: Final = "rate(7 days)"
#: The recipes' creation time, shown by DescribeRecipe (they are fixed).
RECIPES_CREATED: Final = 1_543_622_400.0


# ------------------------------------------------------------------------------------------ recipes


def describe_recipe_object(recipe: Recipe) -> Body:
    """The Recipe object of DescribeRecipe/ListRecipes."""
    return {
        "name": recipe.name,
        "recipeArn": recipe.arn,
        "algorithmArn": recipe.algorithm_arn,
        "featureTransformationArn": recipe.feature_transformation_arn,
        "status": ACTIVE,
        "description": recipe.description,
        "creationDateTime": RECIPES_CREATED,
        "recipeType": recipe.recipe_type,
        "lastUpdatedDateTime": RECIPES_CREATED,
    }


async def describe_recipe(plane: ControlPlane, body: Body) -> Body:
    """DescribeRecipe (the recipes with a local implementation only)."""
    recipe = recipe_for(body["recipeArn"])
    if recipe is None:
        raise ResourceNotFoundError(f"Could not find recipe {body['recipeArn']} (emulated: {sorted(RECIPES)})")
    return {"recipe": describe_recipe_object(recipe)}


async def list_recipes(plane: ControlPlane, body: Body) -> Body:
    """ListRecipes: the emulated SERVICE recipes (none of them belongs to a domain)."""
    if body.get("domain"):
        return {"recipes": []}
    chunk, token = paginate([describe_recipe_object(recipe) for recipe in RECIPES.values()], body)
    return {"recipes": chunk, "nextToken": token}


# ----------------------------------------------------------------------------------------- solutions


def _schedule_days(expression: str | None) -> int:
    text = (expression or DEFAULT_SCHEDULE).strip()
    match = SCHEDULE.fullmatch(text)
    if match is None or not 1 <= int(match.group(1)) <= 30:
        raise InvalidInputError(f"schedulingExpression must be rate(N days) with N in 1..30, got {text!r}")
    return int(match.group(1))


async def create_solution(plane: ControlPlane, body: Body) -> Body:
    """CreateSolution: a recipe, its hyperparameters, and automatic training (on by default)."""
    if body.get("performAutoML"):
        raise InvalidInputError("performAutoML is not supported by the emulator; give a recipeArn")
    recipe_arn = body.get("recipeArn")
    if not recipe_arn:
        raise InvalidInputError("recipeArn is required")
    recipe = recipe_for(recipe_arn)
    if recipe is None:
        raise ResourceNotFoundError(f"Could not find recipe {recipe_arn} (emulated: {sorted(RECIPES)})")
    group = plane.get(DatasetGroup, body["datasetGroupArn"])
    plane.require_active(group)
    config: Body = dict(body.get("solutionConfig") or {})
    threshold = config.get("eventValueThreshold")
    if threshold is not None:
        try:
            float(threshold)
        except ValueError:
            raise InvalidInputError(f"solutionConfig.eventValueThreshold must be a number, got {threshold!r}") from None
    auto_training = body.get("performAutoTraining")
    perform_auto_training = True if auto_training is None else bool(auto_training)
    days = _schedule_days((config.get("autoTrainingConfig") or {}).get("schedulingExpression"))
    solution = Solution(
        arn=plane.arn(f"solution/{body['name']}"),
        name=body["name"],
        dataset_group_arn=group.arn,
        recipe=recipe,
        event_type=body.get("eventType"),
        perform_hpo=bool(body.get("performHPO")),
        perform_auto_training=perform_auto_training,
        perform_incremental_update=bool(body.get("performIncrementalUpdate")),
        solution_config=config,
        auto_training_days=days,
        tags=list(body.get("tags") or []),
    )
    try:
        recipe.parameters(solution.hyperparameters())
    except ParameterError as exc:
        raise InvalidInputError(f"Invalid solutionConfig for {recipe.name}: {exc}") from None
    plane.add(solution)
    await plane.settle(plane.launch(solution, on_active=lambda: schedule_auto_training(plane, solution)))
    return {"solutionArn": solution.arn}


async def describe_solution(plane: ControlPlane, body: Body) -> Body:
    """DescribeSolution (with ``latestSolutionVersion`` and ``latestSolutionUpdate``)."""
    return {"solution": plane.get(Solution, body["solutionArn"]).describe()}


async def list_solutions(plane: ControlPlane, body: Body) -> Body:
    """ListSolutions (of one dataset group when ``datasetGroupArn`` is given)."""
    group_arn = body.get("datasetGroupArn")
    solutions = [s for s in plane.table(Solution).values() if group_arn is None or s.dataset_group_arn == group_arn]
    return plane.page("ListSolutions", "solutions", solutions, body)


async def update_solution(plane: ControlPlane, body: Body) -> Body:
    """UpdateSolution: turn automatic training on or off and change its schedule."""
    solution = plane.get(Solution, body["solutionArn"])
    plane.require_active(solution)
    if solution.latest_update is not None and solution.latest_update.get("status") != ACTIVE:
        raise ResourceInUseError(f"Solution {solution.arn} has an update in progress")
    update_config: Body = dict(body.get("solutionUpdateConfig") or {})
    schedule = (update_config.get("autoTrainingConfig") or {}).get("schedulingExpression")
    days = _schedule_days(schedule) if schedule else solution.auto_training_days
    perform = body.get("performAutoTraining")
    now = time.time()
    update: Body = {
        "solutionUpdateConfig": update_config or None,
        "status": UPDATE_PENDING,
        "performAutoTraining": solution.perform_auto_training if perform is None else bool(perform),
        "performIncrementalUpdate": body.get("performIncrementalUpdate"),
        "creationDateTime": now,
        "lastUpdatedDateTime": now,
    }
    solution.latest_update = update

    async def progress() -> None:
        await plane.pause()
        update.update(status=UPDATE_IN_PROGRESS, lastUpdatedDateTime=time.time())
        await plane.pause()
        solution.perform_auto_training = bool(update["performAutoTraining"])
        solution.auto_training_days = days
        if schedule:
            solution.solution_config["autoTrainingConfig"] = {"schedulingExpression": schedule}
        if body.get("performIncrementalUpdate") is not None:
            solution.perform_incremental_update = bool(body["performIncrementalUpdate"])
        update.update(status=ACTIVE, lastUpdatedDateTime=time.time())
        solution.updated_at = time.time()
        schedule_auto_training(plane, solution)

    await plane.settle(plane.spawn(progress(), f"update {solution.arn}"))
    return {"solutionArn": solution.arn}


async def delete_solution(plane: ControlPlane, body: Body) -> None:
    """DeleteSolution (and its versions): refused while a campaign serves a version or one trains."""
    solution = plane.get(Solution, body["solutionArn"])
    versions = [v for v in plane.table(SolutionVersion).values() if v.solution is solution]
    version_arns = {version.arn for version in versions}
    campaigns = [c.arn for c in plane.table(Campaign).values() if c.solution_version_arn in version_arns]
    if campaigns:
        raise ResourceInUseError(f"Solution {solution.arn} has versions used by campaign(s) {', '.join(campaigns)}")
    training = [version.arn for version in versions if version.status in IN_FLIGHT]
    if training:
        raise ResourceInUseError(f"Solution {solution.arn} has solution version(s) in progress: {', '.join(training)}")
    if solution.auto_task is not None:
        solution.auto_task.cancel()

    def deleted() -> None:
        for version in versions:
            plane.table(SolutionVersion).pop(version.arn, None)

    await plane.settle(plane.delete(solution, deleted))


# ------------------------------------------------------------------------------- automatic training


def schedule_auto_training(plane: ControlPlane, solution: Solution) -> None:
    """(Re)start the solution's automatic training: first after ``autoTrainingDelaySeconds`` (skipped if a
    version was created manually by then), then every ``rate(N days)``."""
    if solution.auto_task is not None:
        solution.auto_task.cancel()
        solution.auto_task = None
    if not solution.perform_auto_training:
        return

    async def loop() -> None:
        settings = plane.settings
        await asyncio.sleep(settings.auto_training_delay_seconds)
        first = True
        while True:
            if not (first and solution.manual_version_created):
                start_auto_training(plane, solution)
            first = False
            await asyncio.sleep(solution.auto_training_days * settings.auto_training_day_seconds)

    solution.auto_task = plane.spawn(loop(), f"auto-train {solution.arn}")


def start_auto_training(plane: ControlPlane, solution: Solution) -> SolutionVersion | None:
    """Create an automatic solution version now, unless one is already training (then ``None``)."""
    if not solution.active or plane.find(Solution, solution.arn) is not solution:
        return None
    if any(v.solution is solution and v.status in IN_FLIGHT for v in plane.table(SolutionVersion).values()):
        logger.info("automatic training skipped: a version is in progress", extra={"solution": solution.arn})
        return None
    return _new_version(plane, solution, name=None, mode="AUTOTRAIN", training_type="AUTOMATIC")


async def auto_train_now(plane: ControlPlane, solution_arn: str) -> SolutionVersion:
    """Run the solution's automatic training now (admin); raise like CreateSolutionVersion would."""
    solution = plane.get(Solution, solution_arn)
    plane.require_active(solution)
    version = start_auto_training(plane, solution)
    if version is None:
        raise ResourceInUseError(f"Solution {solution.arn} has a version in progress")
    if version.task is not None:
        await plane.settle(version.task)
    return version


# --------------------------------------------------------------------------------- solution versions


def training_set(plane: ControlPlane, solution: Solution) -> tuple[list[Interaction], int]:
    """The interactions a version of ``solution`` trains on, and how many streamed ones they include."""
    data = plane.group_data(solution.dataset_group_arn)
    seen = len(data.streamed)
    config = solution.solution_config
    chosen = [i for i in data.interactions() if accepts(config, solution.event_type, i)]
    return chosen, seen


def check_minimums(interactions: Sequence[Interaction], solution: Solution) -> None:
    """Raise :class:`JobFailedError` unless there are 1000 interactions and 25 users with 2 or more."""
    unique = {(i.user_id, i.item_id, i.timestamp, i.event_type) for i in interactions}
    per_user: dict[str, int] = {}
    for user_id, _, _, _ in unique:
        per_user[user_id] = per_user.get(user_id, 0) + 1
    users = sum(1 for count in per_user.values() if count >= MIN_USER_INTERACTIONS)
    if len(unique) >= MIN_INTERACTIONS and users >= MIN_USERS:
        return
    kind = f" of event type {solution.event_type!r}" if solution.event_type else ""
    raise JobFailedError(
        f"Insufficient training data in dataset group {solution.dataset_group_arn}: found {len(unique)} unique "
        f"interactions{kind} and {users} users with at least {MIN_USER_INTERACTIONS} interactions; training needs "
        f"at least {MIN_INTERACTIONS} interactions and at least {MIN_USERS} users with "
        f"{MIN_USER_INTERACTIONS} or more interactions each."
    )


def _new_version(
    plane: ControlPlane, solution: Solution, *, name: str | None, mode: str, training_type: str
) -> SolutionVersion:
    version = SolutionVersion(
        arn=f"{solution.arn}/{uuid.uuid4().hex[:8]}",
        name=name or "",
        solution=solution,
        training_mode=mode,
        training_type=training_type,
    )
    plane.add(version)
    solution.latest_version = version

    async def work() -> None:
        interactions_ready = any(
            d.dataset_group_arn == solution.dataset_group_arn and d.dataset_type == "INTERACTIONS" and d.active
            for d in plane.table(Dataset).values()
        )
        if not interactions_ready:
            raise JobFailedError(
                f"Dataset group {solution.dataset_group_arn} has no ACTIVE INTERACTIONS dataset to train on"
            )
        interactions, seen = training_set(plane, solution)
        check_minimums(interactions, solution)
        started = time.monotonic()
        model = await asyncio.to_thread(solution.recipe.train, interactions, solution.hyperparameters())
        data = plane.group_data(solution.dataset_group_arn)
        if model.realtime:
            for interaction in data.streamed[seen:]:
                if accepts(solution.solution_config, solution.event_type, interaction):
                    model.observe(interaction)
        version.model = model
        version.streamed_seen = len(data.streamed)
        version.interactions_trained = len(interactions)
        version.training_hours = round((time.monotonic() - started) / 3600.0, 6)

    def activated() -> None:
        for campaign in plane.table(Campaign).values():
            current = plane.find(SolutionVersion, campaign.solution_version_arn)
            if campaign.follows_latest and campaign.active and current is not None and current.solution is solution:
                campaign.solution_version_arn = version.arn
                campaign.updated_at = time.time()
                logger.info("campaign follows the latest version", extra={"campaign": campaign.arn})

    plane.launch(version, work, on_active=activated)
    return version


async def create_solution_version(plane: ControlPlane, body: Body) -> Body:
    """CreateSolutionVersion: train (FULL; UPDATE only for aws-user-personalization with an ACTIVE version)."""
    solution = plane.get(Solution, body["solutionArn"])
    plane.require_active(solution)
    versions = [v for v in plane.table(SolutionVersion).values() if v.solution is solution]
    busy = [version.arn for version in versions if version.status in IN_FLIGHT]
    if busy:
        raise ResourceInUseError(f"Solution {solution.arn} already has a solution version in progress: {busy[0]}")
    mode = body.get("trainingMode") or "FULL"
    if mode not in ("FULL", "UPDATE"):
        raise InvalidInputError(f"trainingMode must be FULL or UPDATE, got {mode!r}")
    if mode == "UPDATE":
        if solution.recipe.name != "aws-user-personalization":
            raise InvalidInputError("trainingMode UPDATE is only supported for aws-user-personalization")
        if not any(version.active for version in versions):
            raise InvalidInputError(f"trainingMode UPDATE needs an ACTIVE FULL solution version of {solution.arn}")
    solution.manual_version_created = True
    version = _new_version(plane, solution, name=body.get("name"), mode=mode, training_type="MANUAL")
    if version.task is not None:
        await plane.settle(version.task)
    return {"solutionVersionArn": version.arn}


async def describe_solution_version(plane: ControlPlane, body: Body) -> Body:
    """DescribeSolutionVersion."""
    return {"solutionVersion": plane.get(SolutionVersion, body["solutionVersionArn"]).describe()}


async def list_solution_versions(plane: ControlPlane, body: Body) -> Body:
    """ListSolutionVersions (of one solution when ``solutionArn`` is given)."""
    solution_arn = body.get("solutionArn")
    if solution_arn is not None:
        plane.get(Solution, solution_arn)
    versions = [
        v for v in plane.table(SolutionVersion).values() if solution_arn is None or v.solution.arn == solution_arn
    ]
    return plane.page("ListSolutionVersions", "solutionVersions", versions, body)


async def stop_solution_version_creation(plane: ControlPlane, body: Body) -> None:
    """StopSolutionVersionCreation: a version still in progress ends CREATE STOPPED."""
    version = plane.get(SolutionVersion, body["solutionVersionArn"])
    if version.status not in IN_FLIGHT:
        raise ResourceInUseError(f"Solution version {version.arn} is {version.status}; only one in progress can stop")
    if version.task is not None:
        version.task.cancel()
    version.set_status("CREATE STOPPED")


# ------------------------------------------------------------------------------------------ campaigns


def _usable_version(plane: ControlPlane, arn: str) -> SolutionVersion:
    version = plane.get(SolutionVersion, arn)
    plane.require_active(version)
    return version


async def create_campaign(plane: ControlPlane, body: Body) -> Body:
    """CreateCampaign: serves an ACTIVE solution version."""
    version = _usable_version(plane, body["solutionVersionArn"])
    campaign = Campaign(
        arn=plane.arn(f"campaign/{body['name']}"),
        name=body["name"],
        solution_version_arn=version.arn,
        min_provisioned_tps=int(body.get("minProvisionedTPS") or 1),
        campaign_config=dict(body.get("campaignConfig") or {}),
        tags=list(body.get("tags") or []),
    )
    plane.add(campaign)
    await plane.settle(plane.launch(campaign))
    return {"campaignArn": campaign.arn}


async def describe_campaign(plane: ControlPlane, body: Body) -> Body:
    """DescribeCampaign."""
    return {"campaign": plane.get(Campaign, body["campaignArn"]).describe()}


async def list_campaigns(plane: ControlPlane, body: Body) -> Body:
    """ListCampaigns (of one solution's versions when ``solutionArn`` is given)."""
    solution_arn = body.get("solutionArn")
    campaigns = [
        campaign
        for campaign in plane.table(Campaign).values()
        if solution_arn is None or campaign.solution_version_arn.startswith(solution_arn + "/")
    ]
    return plane.page("ListCampaigns", "campaigns", campaigns, body)


async def update_campaign(plane: ControlPlane, body: Body) -> Body:
    """UpdateCampaign: the campaign stays ACTIVE on its old version until the update is ACTIVE."""
    campaign = plane.get(Campaign, body["campaignArn"])
    plane.require_active(campaign)
    if campaign.latest_update is not None and campaign.latest_update.get("status") not in (ACTIVE, CREATE_FAILED):
        raise ResourceInUseError(f"Campaign {campaign.arn} has an update in progress")
    version_arn = body.get("solutionVersionArn") or campaign.solution_version_arn
    _usable_version(plane, version_arn)
    tps = int(body.get("minProvisionedTPS") or campaign.min_provisioned_tps)
    config = {**campaign.campaign_config, **dict(body.get("campaignConfig") or {})}
    now = time.time()
    update: Body = {
        "solutionVersionArn": version_arn,
        "minProvisionedTPS": tps,
        "campaignConfig": config or None,
        "status": UPDATE_PENDING,
        "creationDateTime": now,
        "lastUpdatedDateTime": now,
    }
    campaign.latest_update = update

    async def progress() -> None:
        await plane.pause()
        update.update(status=UPDATE_IN_PROGRESS, lastUpdatedDateTime=time.time())
        await plane.pause()
        if plane.find(SolutionVersion, version_arn) is None:
            update.update(status=CREATE_FAILED, failureReason=f"Solution version {version_arn} no longer exists")
            return
        campaign.solution_version_arn = version_arn
        campaign.min_provisioned_tps = tps
        campaign.campaign_config = config
        campaign.updated_at = time.time()
        update.update(status=ACTIVE, lastUpdatedDateTime=campaign.updated_at)

    await plane.settle(plane.spawn(progress(), f"update {campaign.arn}"))
    return {"campaignArn": campaign.arn}


async def delete_campaign(plane: ControlPlane, body: Body) -> None:
    """DeleteCampaign."""
    campaign = plane.get(Campaign, body["campaignArn"])
    await plane.settle(plane.delete(campaign))


OPERATIONS = {
    "DescribeRecipe": describe_recipe,
    "ListRecipes": list_recipes,
    "CreateSolution": create_solution,
    "DescribeSolution": describe_solution,
    "ListSolutions": list_solutions,
    "UpdateSolution": update_solution,
    "DeleteSolution": delete_solution,
    "CreateSolutionVersion": create_solution_version,
    "DescribeSolutionVersion": describe_solution_version,
    "ListSolutionVersions": list_solution_versions,
    "StopSolutionVersionCreation": stop_solution_version_creation,
    "CreateCampaign": create_campaign,
    "DescribeCampaign": describe_campaign,
    "ListCampaigns": list_campaigns,
    "UpdateCampaign": update_campaign,
    "DeleteCampaign": delete_campaign,
}
