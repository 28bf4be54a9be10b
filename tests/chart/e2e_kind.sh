#!/usr/bin/env bash
# End-to-end smoke test of the chart on a throwaway kind cluster, for users' CI.
# NOT RUN in this repository's CI: the build machines have no Docker, kind or cluster. Needs docker,
# kind, helm and kubectl on PATH. Usage: bash tests/chart/e2e_kind.sh [cluster-name]
set -euo pipefail
cd "$(dirname "$0")/../.."
name="${1:-vlmops-e2e}"
version="$(sed -n 's/^appVersion: "\(.*\)"/\1/p' charts/vlmops/Chart.yaml)"
img="ghcr.io/vlmops/vlmops-operator:${version}"

kind create cluster --name "$name" --wait 120s
trap 'kind delete cluster --name "$name"' EXIT
docker build -f images/operator/Dockerfile -t "$img" .
kind load docker-image "$img" --name "$name"
# PyTorchJob CRD (Kubeflow Training Operator) so the operator can watch pytorchjobs.
kubectl apply --server-side -k "github.com/kubeflow/training-operator.git/manifests/overlays/standalone?ref=v1.9.3"

helm install vlmops charts/vlmops -n vlmops-system --create-namespace --wait --timeout 5m \
  --set operator.image.pullPolicy=Never
kubectl -n vlmops-system rollout status deploy/vlmops --timeout=180s
for crd in balancedcorpora packeddatasets vlmtrainingstages evalsuites; do
  kubectl wait --for=condition=Established "crd/${crd}.vlmops.dev" --timeout=60s
done
# RBAC: the operator's ServiceAccount can do what it needs, and no more than that.
sa=system:serviceaccount:vlmops-system:vlmops
kubectl auth can-i patch vlmtrainingstages.vlmops.dev/status --as "$sa" -n default
kubectl auth can-i create pytorchjobs.kubeflow.org --as "$sa" -n default
if kubectl auth can-i get secrets --as "$sa" -n default; then echo "operator may read Secrets" >&2; exit 1; fi
kubectl create namespace vlm
kubectl apply -f examples/llava-ov-1.5/
sleep 20
kubectl get vlmops -n vlm
# Every CR got a status from the operator (inputs are not Ready, so they wait).
kubectl get vlmops -n vlm -o jsonpath='{range .items[*]}{.kind}/{.metadata.name} {.status.conditions[?(@.type=="Reconciling")].reason}{"\n"}{end}'
helm uninstall vlmops -n vlmops-system
kubectl get crd vlmtrainingstages.vlmops.dev   # kept (helm.sh/resource-policy: keep)
echo "e2e OK"
