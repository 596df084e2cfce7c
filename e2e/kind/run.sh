#!/usr/bin/env bash
# The drill's story on a real Kubernetes cluster (kind or any other), with two namespaces as the
# two "regions". NOT run in this project's CI: its machines have no container engine and no
# Kubernetes. Needs: docker, kind, kubectl, helm.
#
#   e2e/kind/run.sh            # creates a kind cluster named redis-dr, runs, leaves it for you
#   KIND=0 e2e/kind/run.sh     # use the current kubectl context instead
set -euo pipefail
cd "$(dirname "$0")/../.."
IMAGE=${IMAGE:-redis-operator:e2e}
A=region-a
B=region-b

if [ "${KIND:-1}" = 1 ]; then
  kind create cluster --name redis-dr 2>/dev/null || true
  docker build -t "$IMAGE" .
  kind load docker-image "$IMAGE" --name redis-dr
fi

helm upgrade --install redis-operator charts/redis-operator -n redis-system --create-namespace \
  --set image.repository="${IMAGE%%:*}" --set image.tag="${IMAGE##*:}" --wait

for ns in $A $B; do kubectl create namespace $ns --dry-run=client -o yaml | kubectl apply -f -; done
pw=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
kubectl -n $A create secret generic prod-redis-auth --from-literal=password="$pw" --dry-run=client -o yaml | kubectl apply -f -
kubectl -n $B create secret generic prod-redis-auth --from-literal=password="$pw" --dry-run=client -o yaml | kubectl apply -f -
kubectl -n $B create secret generic dr-redis-auth --from-literal=password="$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')" --dry-run=client -o yaml | kubectl apply -f -

# The spec's samples, in the two namespaces, small volumes.
sed -e "s/namespace: production/namespace: $A/" -e 's/100Gi/1Gi/' config/samples/prod-redis.yaml | kubectl apply -f -
sed -e "s/namespace: production/namespace: $B/" -e 's/100Gi/1Gi/' \
    -e "s/prod-redis-leader.production.svc.cluster.local/prod-redis-leader.$A.svc.cluster.local/" \
    config/samples/dr-redis.yaml | kubectl apply -f -

echo ">> waiting for the DR cluster to replicate"
kubectl -n $B wait rediscluster/dr-redis --for=jsonpath='{.status.conditions[?(@.type=="SourceLinkUp")].status}'=True --timeout=300s
kubectl -n $B get rdc dr-redis
# The spec's own form: the password from the Secret, redis-server the default container.
kubectl -n $A exec prod-redis-0 -- redis-cli -a "$pw" --no-auth-warning SET drill:key from-a
kubectl -n $B exec dr-redis-0 -- redis-cli -a "$(kubectl -n $B get secret dr-redis-auth -o jsonpath='{.data.password}' | base64 -d)" --no-auth-warning INFO replication

echo ">> promote"
kubectl -n $B patch rediscluster dr-redis --type=merge -p '{"spec":{"replicaMode":{"promote":true}}}'
kubectl -n $B wait rediscluster/dr-redis --for=jsonpath='{.status.conditions[?(@.type=="ReplicaMode")].reason}'=Promoted --timeout=120s
kubectl -n $B get pods -l redis.io/cluster=dr-redis,redis.io/role=primary
kubectl -n $B describe rediscluster dr-redis | sed -n '/Events:/,$p'

echo ">> demote (the DR drill's return path)"
kubectl -n $B patch rediscluster dr-redis --type=merge -p '{"spec":{"replicaMode":{"promote":false}}}'
kubectl -n $B wait rediscluster/dr-redis --for=jsonpath='{.status.conditions[?(@.type=="ReplicaMode")].reason}'=Enabled --timeout=300s
echo "ok: the story ran on $(kubectl config current-context)"
