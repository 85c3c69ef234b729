#!/usr/bin/env bash
# Re-derive the staging-module replace list of go.mod from the published k8s.io/kubernetes go.mod.
# Usage: cluster/go/kubernetes/update-replaces.sh v1.34.5
set -euo pipefail
cd "$(dirname "$0")"
version=${1:?usage: $0 v1.X.Y}
staging=v0.${version#v1.}
gomod=$(go mod download -json "k8s.io/kubernetes@${version}" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
go mod edit -require="k8s.io/kubernetes@${version}"
for m in $(grep -E '^\s*k8s.io/\S+ v0\.0\.0\s*$' "$gomod" | awk '{print $1}' | sort -u); do
  go mod edit -replace="${m}=${m}@${staging}"
done
go mod tidy
echo "replaced $(grep -cE "=> k8s.io/\S+ ${staging}" go.mod) staging modules with ${staging}"
