#!/usr/bin/env bash
# Builds the control plane of the k8s test lane from the Go module proxy into $1 (a cache dir the Makefile keys by
# the versions and this script): etcd, kube-apiserver, kube-controller-manager, kube-scheduler, KWOK and the KubeRay
# operator. Idempotent: a finished build leaves $1/bin/.complete, and nothing is rebuilt once it exists.
set -euo pipefail

out=$1
: "${KUBERNETES_VERSION:?}" "${ETCD_VERSION:?}" "${KWOK_VERSION:?}" "${KUBERAY_OPERATOR_VERSION:?}"
test -f "$out/bin/.complete" && exit 0
mkdir -p "$out/bin"
export CGO_ENABLED=0 GOFLAGS="-buildvcs=false -mod=mod" GOBIN="$out/bin"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Kubernetes' staging modules are `replace`d by local paths in its go.mod, which a consumer cannot follow: a wrapper
# module replaces each with its published v0.x twin (k8s.io/sample-cli-plugin is not served, and nothing needs it).
staging_version=v0.${KUBERNETES_VERSION#v1.}
mkdir -p "$work/kubernetes" && cd "$work/kubernetes"
{
  echo "module travel-recsys/k8s-harness"
  echo "go 1.26"
  echo "require k8s.io/kubernetes $KUBERNETES_VERSION"
  curl -fsSL --retry 3 "https://proxy.golang.org/k8s.io/kubernetes/@v/$KUBERNETES_VERSION.mod" \
    | sed -n 's|^\s*\(k8s.io/[a-z-]*\) => ./staging/src/.*|\1|p' | grep -vx k8s.io/sample-cli-plugin \
    | while read -r module; do echo "replace $module => $module $staging_version"; done
} > go.mod
echo "building kube-apiserver, kube-controller-manager, kube-scheduler $KUBERNETES_VERSION (~5 minutes on 2 cores)"
go build -o "$out/bin/" k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kube-scheduler

# etcd's server module replaces its sibling modules by path too.
mkdir -p "$work/etcd" && cd "$work/etcd"
{
  echo "module travel-recsys/etcd-harness"
  echo "go 1.26"
  echo "require go.etcd.io/etcd/server/v3 $ETCD_VERSION"
  for module in api client/pkg client pkg; do
    echo "replace go.etcd.io/etcd/$module/v3 => go.etcd.io/etcd/$module/v3 $ETCD_VERSION"
  done
} > go.mod
echo "building etcd $ETCD_VERSION"
go build -o "$out/bin/etcd" go.etcd.io/etcd/server/v3

echo "building kwok $KWOK_VERSION and the KubeRay operator $KUBERAY_OPERATOR_VERSION"
cd "$work"
GOFLAGS=-buildvcs=false go install "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
GOFLAGS=-buildvcs=false go install "github.com/ray-project/kuberay/ray-operator@$KUBERAY_OPERATOR_VERSION"
# The operator's own CRDs, to tell which fields of the v1.7.0 CRDs this older operator knows (tests/k8s).
mkdir -p "$out/kuberay-operator-crds"
cp "$(go env GOMODCACHE)/github.com/ray-project/kuberay/ray-operator@$KUBERAY_OPERATOR_VERSION"/config/crd/bases/*.yaml \
  "$out/kuberay-operator-crds/"
chmod u+w "$out"/kuberay-operator-crds/*.yaml
# KWOK's "fast" stages (what kwokctl runs by default): nodes become Ready and keep a lease, pods Running at once.
stages="$(go env GOMODCACHE)/sigs.k8s.io/kwok@$KWOK_VERSION/kustomize/stage"
for stage in "$stages"/node/fast/*.yaml "$stages"/node/heartbeat-with-lease/*.yaml "$stages"/pod/fast/*.yaml; do
  case $stage in */kustomization.yaml) continue ;; esac
  echo "---"; cat "$stage"
done > "$out/bin/kwok-stages.yaml"
touch "$out/bin/.complete"
