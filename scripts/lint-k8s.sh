#!/usr/bin/env bash
# Lint and strictly validate every Kubernetes manifest pipeserve ships, without a cluster:
#   helm lint --strict + helm template (defaults and every ci/*-values.yaml scenario),
#   kubectl kustomize (every overlay), the strict KServe CRD/SDK check (pipeserve.kube.lint),
#   kubernetes-validate --strict for built-in kinds, and checkov on the rendered output.
# `make lint-k8s` runs it with .tools/bin (pinned kubectl 1.34.5 + helm 3.19.0) on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-.venv/bin/python}
CHECKOV_VENV=${CHECKOV_VENV:-.tools/checkov-venv}
CHECKOV_VERSION=${CHECKOV_VERSION:-3.3.30}
K8S_VERSION=1.34
OUT=${OUT_DIR:-build/lint-k8s}
CHART=charts/pipeserve

fail() { echo "lint-k8s: $*" >&2; exit 1; }
step() { echo; echo "== $*"; }

# checkov's helm/kustomize runners silently pass (rc 0) when the tools are missing: insist on them.
command -v helm >/dev/null || fail "helm is not on PATH; run 'make tools' and add .tools/bin to PATH (make lint-k8s does)"
command -v kubectl >/dev/null || fail "kubectl is not on PATH; run 'make tools' and add .tools/bin to PATH (make lint-k8s does)"
[ -x "$PYTHON" ] || fail "$PYTHON not found; run 'make .venv/.installed' first"
echo "helm $(helm version --short), kubectl $(kubectl version --client | head -1)"

rm -rf "$OUT" && mkdir -p "$OUT/helm" "$OUT/kustomize"

step "helm lint --strict and helm template, per scenario"
helm lint --strict "$CHART"
helm template iris "$CHART" --namespace ml > "$OUT/helm/defaults.yaml"
for values in "$CHART"/ci/*-values.yaml; do
  scenario=$(basename "$values" -values.yaml)
  helm lint --strict "$CHART" -f "$values"
  helm template iris "$CHART" --namespace ml -f "$values" > "$OUT/helm/$scenario.yaml"
  [ -d "manifests/overlays/$scenario" ] || fail "chart scenario $scenario has no matching manifests/overlays/$scenario"
done
# Every optional piece at once (no overlay counterpart): namespaced runtime, pipeline RBAC, KEDA
# with Prometheus auth, PodMonitor.
helm template iris "$CHART" --namespace ml --set target=pipeserve --set servingRuntime.create=true \
  --set rbac.create=true --set autoscaling.autoscaler=keda --set autoscaling.metric=gpu-utilization \
  --set gpu.count=1 --set replicas.min=0 --set autoscaling.prometheus.authMode=bearer \
  --set autoscaling.prometheus.authSecret=prometheus-token --set metrics.podMonitor.create=true \
  > "$OUT/helm/optional-pieces.yaml"
for overlay in manifests/overlays/*/; do
  scenario=$(basename "$overlay")
  [ -f "$CHART/ci/$scenario-values.yaml" ] || fail "overlay $scenario has no matching $CHART/ci/$scenario-values.yaml"
done

step "kubectl kustomize, per overlay"
for dir in manifests/base manifests/rbac manifests/overlays/* manifests/runtime manifests/pipeline; do
  name=$(echo "${dir#manifests/}" | tr / -)
  if [ ! -f "$dir/kustomization.yaml" ]; then
    echo "SKIPPED $dir: no kustomization.yaml yet"; continue
  fi
  if [ "$dir" = manifests/pipeline ] && [ ! -f "$dir/pipeline.yaml" ]; then
    echo "SKIPPED $dir: pipeline.yaml is missing (make compile writes it)"; continue
  fi
  kubectl kustomize "$dir" > "$OUT/kustomize/$name.yaml"
  echo "built $dir"
done

step "strict schema check (KServe CRDs with unknown fields rejected, kserve 0.21 SDK fields, admission rules)"
"$PYTHON" -m pipeserve.kube.lint "$OUT"/helm/*.yaml "$OUT"/kustomize/*.yaml

step "kubernetes-validate --strict (built-in kinds, Kubernetes $K8S_VERSION)"
# It skips custom resources with a warning; those were checked above.
"$(dirname "$PYTHON")/kubernetes-validate" --strict -k "$K8S_VERSION" --quiet "$OUT"/helm/*.yaml "$OUT"/kustomize/*.yaml

step "checkov $CHECKOV_VERSION (rendered output, the chart, the Kustomize tree)"
if [ ! -x "$CHECKOV_VENV/bin/checkov" ] || ! "$CHECKOV_VENV/bin/checkov" --version | grep -qx "$CHECKOV_VERSION"; then
  echo "creating $CHECKOV_VENV (checkov==$CHECKOV_VERSION, about a minute)"
  python3 -m venv "$CHECKOV_VENV"
  "$CHECKOV_VENV/bin/pip" install --quiet "checkov==$CHECKOV_VERSION"
fi
# --skip-download: no guideline download (there is no network here, and it only adds links).
"$CHECKOV_VENV/bin/checkov" --compact --quiet --skip-download --framework kubernetes -d "$OUT"
"$CHECKOV_VENV/bin/checkov" --compact --quiet --skip-download --framework helm -d charts
"$CHECKOV_VENV/bin/checkov" --compact --quiet --skip-download --framework kustomize -d manifests

echo; echo "lint-k8s: all checks passed (rendered output in $OUT)"
