#!/usr/bin/env bash
# Offline checks of the Helm chart (charts/redis-operator) and the Prometheus rules
# (config/prometheus). No Kubernetes cluster is needed; every check uses the real tool:
#
#   1. yamllint on the chart's values, Chart.yaml, ci/ value sets and config/prometheus;
#      the JSON schemas checked against their metaschemas; the dashboard JSON parsed.
#   2. helm lint --strict with each value set.
#   3. helm template with each value set (defaults + charts/redis-operator/ci/*-values.yaml),
#      and NOTES.txt (helm install --dry-run=client) checked for the next steps.
#   4. Every rendered object validated: built-in kinds and the CRD with kubernetes-validate
#      --strict against Kubernetes $K8S_VERSIONS (1.37 and 1.28); monitoring.coreos.com
#      kinds (PodMonitor, ServiceMonitor, PrometheusRule) with check-jsonschema against
#      config/prometheus/schemas/.
#      Any other kind fails (no silent skip).
#   5. Assertions on the rendered objects: labels, args, probes, security context, exact RBAC
#      rules (least privilege), namespaced vs cluster-wide RBAC, monitors, alert rules,
#      dashboard.
#   6. values.schema.json rejects bad values (negative tests: each must fail, naming the key).
#   7. checkov on every rendering: zero failures (skips listed and justified below).
#   8. promtool check rules + promtool test rules on the rules extracted from the chart's
#      rendered PrometheusRule (defaults and custom thresholds), and on the standalone
#      config/prometheus/redis-replication-rules.yaml, which must equal the chart's rendering.
#
# Exits non-zero on the first failed check.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export PATH="$root/.tools/bin:$root/.tools/venv/bin:$PATH"

chart=charts/redis-operator
release=redis-operator
namespace=redis-system
# Kubernetes versions the manifests are validated against (kubernetes-validate's bundled
# schemas): the newest it knows (current) and the oldest the chart claims (Chart.yaml
# kubeVersion >=1.28: the CRD's x-kubernetes-validations use fieldPath/reason, new in 1.28).
K8S_VERSIONS=${K8S_VERSIONS:-1.37.0 1.28.0}
python=$root/.tools/venv/bin/python

start=$(date +%s)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

step() { printf '\n== %s\n' "$*"; }
ok() { printf '  ok: %s\n' "$*"; }
die() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }

step "tools"
for t in helm kubernetes-validate check-jsonschema checkov yamllint promtool; do
  command -v "$t" >/dev/null 2>&1 || die "$t not found (run 'make deps')"
done
[ -x "$python" ] || die "$python not found (run 'make deps')"
ok "$(helm version --short), kubernetes-validate $(kubernetes-validate --version), $(check-jsonschema --version | tr -d '\n'), checkov $(checkov --version 2>/dev/null), $(yamllint --version), $(promtool --version 2>&1 | head -1)"

# Value sets: the defaults, and every ci/*-values.yaml (the chart-testing convention).
sets=(defaults)
for f in "$chart"/ci/*-values.yaml; do
  s=$(basename "$f" -values.yaml)
  sets+=("$s")
done
values_args() { # values_args <set>
  if [ "$1" != defaults ]; then printf '%s\n' -f "$chart/ci/$1-values.yaml"; fi
}

step "1. yamllint, JSON metaschemas, dashboard JSON"
yamllint_config='{extends: default, rules: {line-length: {max: 120}, document-start: disable, comments: {min-spaces-from-content: 2}}}'
mapfile -t yaml_files < <(ls "$chart"/Chart.yaml "$chart"/values.yaml "$chart"/ci/*.yaml; find config/prometheus -name '*.yaml' | sort)
yamllint --strict -d "$yamllint_config" "${yaml_files[@]}" || die "yamllint"
ok "yamllint --strict: ${yaml_files[*]}"
check-jsonschema --check-metaschema "$chart"/values.schema.json config/prometheus/schemas/*.json >/dev/null \
  || die "a JSON schema does not match its metaschema"
ok "values.schema.json and config/prometheus/schemas/*.json are valid JSON Schemas"
"$python" -c 'import json,sys; json.load(open(sys.argv[1]))' "$chart"/dashboards/redis-replication.json \
  || die "dashboard JSON does not parse"
ok "dashboards/redis-replication.json parses"

step "2. helm lint --strict"
for s in "${sets[@]}"; do
  mapfile -t va < <(values_args "$s")
  helm lint --strict --quiet "$chart" --namespace "$namespace" "${va[@]}" >"$tmp/lint.out" 2>&1 \
    || { cat "$tmp/lint.out"; die "helm lint --strict ($s)"; }
  ok "helm lint --strict with values '$s'"
done

step "3. helm template"
mkdir -p "$tmp/render"
for s in "${sets[@]}"; do
  mapfile -t va < <(values_args "$s")
  helm template "$release" "$chart" --namespace "$namespace" --include-crds "${va[@]}" \
    >"$tmp/render/$s.yaml" || die "helm template ($s)"
  ok "rendered '$s': $(grep -c '^kind:' "$tmp/render/$s.yaml") objects"
  # Once more per Kubernetes version validated in step 4: some objects depend on the version
  # (the FlowSchema is flowcontrol.apiserver.k8s.io/v1 from 1.29, v1beta3 before).
  for v in $K8S_VERSIONS; do
    mkdir -p "$tmp/render-$v"
    helm template "$release" "$chart" --namespace "$namespace" --include-crds --kube-version "$v" "${va[@]}" \
      >"$tmp/render-$v/$s.yaml" || die "helm template --kube-version $v ($s)"
  done
  # NOTES.txt (helm template does not render it): the next steps a user needs.
  helm install "$release" "$chart" --dry-run=client --namespace "$namespace" "${va[@]}" >"$tmp/notes.out" 2>&1 \
    || { cat "$tmp/notes.out"; die "helm install --dry-run=client ($s)"; }
  for want in 'kubectl apply' 'kubectl get rdc' 'kubectl describe rediscluster' '/metrics' \
    'logs -l app.kubernetes.io/name=redis-operator' 'docs/install.md'; do
    sed -n '/^NOTES:/,$p' "$tmp/notes.out" | grep -qF -- "$want" || { cat "$tmp/notes.out"; die "NOTES.txt ($s) lacks '$want'"; }
  done
done
ok "NOTES.txt of every value set tells: kubectl apply a RedisCluster, kubectl get rdc, describe, logs, /metrics, docs/install.md"

step "4. schema validation of every rendered object (Kubernetes $K8S_VERSIONS)"
# Split each rendering: built-in kinds (and the CRD) -> one file for kubernetes-validate;
# Prometheus Operator kinds -> one JSON file per object for check-jsonschema; anything else
# is an error.
split() {
  "$python" - "$1" "$2" <<'PY'
import json, os, sys, yaml
render, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
BUILTIN = {"v1", "apps/v1", "policy/v1", "rbac.authorization.k8s.io/v1", "networking.k8s.io/v1",
           "apiextensions.k8s.io/v1", "flowcontrol.apiserver.k8s.io/v1",
           "flowcontrol.apiserver.k8s.io/v1beta3"}
CRD_KINDS = {("monitoring.coreos.com/v1", k) for k in ("PodMonitor", "ServiceMonitor", "PrometheusRule")}
for fn in sorted(os.listdir(render)):
    s = fn[:-len(".yaml")]
    docs = [d for d in yaml.safe_load_all(open(os.path.join(render, fn))) if d]
    builtin = []
    for i, d in enumerate(docs):
        key = (d.get("apiVersion"), d.get("kind"))
        if key[0] in BUILTIN:
            builtin.append(d)
        elif key in CRD_KINDS:
            name = "%s__%s__%d.json" % (s, key[1].lower(), i)
            json.dump(d, open(os.path.join(out, name), "w"))
        else:
            sys.exit("FAIL: %s: no schema known for %s %s" % (s, key[0], key[1]))
    yaml.safe_dump_all(builtin, open(os.path.join(out, s + ".k8s.yaml"), "w"))
PY
}
split "$tmp/render" "$tmp/split"
for v in $K8S_VERSIONS; do split "$tmp/render-$v" "$tmp/split-$v"; done
for v in $K8S_VERSIONS; do
  for s in "${sets[@]}"; do
    kubernetes-validate --strict -k "$v" "$tmp/split-$v/$s.k8s.yaml" >"$tmp/kv.out" 2>&1 || true
    # kubernetes-validate only warns (exit 0) when it has no schema for a kind: treat any
    # WARN/ERROR/FATAL as a failure.
    if grep -qE '^(WARN|ERROR|FATAL)' "$tmp/kv.out" || ! grep -q '^INFO' "$tmp/kv.out"; then
      cat "$tmp/kv.out"; die "kubernetes-validate -k $v ($s)"
    fi
    ok "kubernetes-validate --strict -k $v '$s': $(grep -c '^INFO' "$tmp/kv.out") objects ($(sed -E 's/.*resource ([a-z]+)\/.*/\1/' "$tmp/kv.out" | sort | uniq -c | awk '{printf "%s%s x%s", sep, $2, $1; sep=", "}'))"
  done
done
echo "  note: PodMonitor/ServiceMonitor/PrometheusRule are CRD kinds kubernetes-validate has no schema"
echo "        for; they are validated with check-jsonschema against config/prometheus/schemas/:"
n_cr=0
for kind in podmonitor servicemonitor prometheusrule; do
  files=("$tmp"/split/*__"$kind"__*.json)
  [ -e "${files[0]}" ] || die "no $kind rendered in any value set (the monitoring sets must render one)"
  check-jsonschema --schemafile "config/prometheus/schemas/$kind-monitoring-v1.json" "${files[@]}" >"$tmp/cj.out" 2>&1 \
    || { cat "$tmp/cj.out"; die "check-jsonschema $kind"; }
  ok "check-jsonschema $kind: ${#files[@]} objects ($(for f in "${files[@]}"; do basename "$f" | cut -d_ -f1; done | sort -u | tr '\n' ' '))"
  n_cr=$((n_cr + ${#files[@]}))
done

step "5. assertions on the rendered objects"
mkdir -p "$tmp/prom/tests"
"$python" - "$tmp/render" "$tmp/prom" "$chart" <<'PY'
import json, os, sys, yaml
render, prom, chart = sys.argv[1:4]
NS = "redis-system"
release_name = "redis-operator"  # the fullname: release and chart share the name
failures = []
def check(cond, what):
    if not cond:
        failures.append(what)
    return cond

def load(s):
    return [d for d in yaml.safe_load_all(open(os.path.join(render, s + ".yaml"))) if d]
def objs(docs, kind, api=None):
    return [d for d in docs if d["kind"] == kind and (api is None or d["apiVersion"] == api)]
def one(docs, kind, s, api=None, name=None):
    found = [d for d in objs(docs, kind, api) if name is None or d["metadata"]["name"] == name]
    check(len(found) == 1, "%s: expected exactly one %s %s, found %d" % (s, kind, name or "", len(found)))
    return found[0] if found else None
def matches(selector, labels):
    for k, v in selector.get("matchLabels", {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions", []):
        op, k = e["operator"], e["key"]
        if op == "Exists" and k not in labels: return False
        if op == "DoesNotExist" and k in labels: return False
        if op == "In" and labels.get(k) not in e["values"]: return False
        if op == "NotIn" and labels.get(k) in e["values"]: return False
    return True
def triples(rules):
    out = set()
    for r in rules:
        for g in r["apiGroups"]:
            for res in r["resources"]:
                for v in r["verbs"]:
                    for n in r.get("resourceNames", [None]):
                        out.add((g, res, v, n))
    return out

# The operator's interface (what it reads and writes): the RBAC must be exactly this.
OPERATOR_RBAC = set()
def allow(group, resources, verbs):
    for res in resources:
        for v in verbs:
            OPERATOR_RBAC.add((group, res, v, None))
allow("redis.io", ["redisclusters"], ["list", "watch"])
allow("redis.io", ["redisclusters/status"], ["patch"])
allow("redis.io", ["redisclusters/finalizers"], ["update"])  # blockOwnerDeletion on owned objects
allow("", ["pods"], ["list", "watch", "patch"])
allow("", ["services", "configmaps", "serviceaccounts"], ["list", "watch", "create", "patch"])
allow("", ["secrets"], ["get"])
allow("rbac.authorization.k8s.io", ["roles", "rolebindings"], ["list", "watch", "create", "patch"])
allow("policy", ["poddisruptionbudgets"], ["list", "watch", "create", "patch"])
allow("apps", ["statefulsets"], ["list", "watch", "create", "patch"])
allow("networking.k8s.io", ["networkpolicies"], ["list", "watch", "create", "patch"])
allow("events.k8s.io", ["events"], ["create"])
LEADER_RBAC = {("coordination.k8s.io", "leases", "create", None),
               ("coordination.k8s.io", "leases", "get", "redis-operator-leader"),
               ("coordination.k8s.io", "leases", "update", "redis-operator-leader")}
# Labels the operator puts on every Redis data pod (a sample pod of cluster dr-redis).
DATA_POD = {"redis.io/cluster": "dr-redis", "redis.io/instance": "dr-redis-1", "redis.io/role": "replica",
            "app.kubernetes.io/name": "redis", "app.kubernetes.io/component": "redis",
            "app.kubernetes.io/managed-by": "redis-operator", "app.kubernetes.io/instance": "dr-redis"}
LAG_SUMMARY = "Redis replication lag is {{ $value | humanize }}B"
DOWN_SUMMARY = "Redis replication link is down for {{ $labels.pod }}"
BACKLOG_SUMMARY = "A link outage longer than {{ $value | humanizeDuration }} now forces {{ $labels.pod }} into a full resync: raise the upstream's repl-backlog-size (replicationBacklogSize)"
METRICS = ["redis_replication_lag_bytes", "redis_master_link_up", "redis_instance_info",
           "redis_operator_promotions_total", "redis_memory_used_bytes", "redis_memory_max_bytes",
           "redis_commands_processed_total", "redis_connected_clients", "redis_db_keys",
           "redis_keyspace_hits_total", "redis_evicted_keys_total", "redis_rdb_last_save_timestamp_seconds"]

def common(s, docs, expect):
    crd = one(docs, "CustomResourceDefinition", s)
    check(crd and crd["metadata"]["name"] == "redisclusters.redis.io", s + ": CRD redisclusters.redis.io rendered")
    for d in docs:
        if d["kind"] not in ("CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding", "FlowSchema"):
            check(d["metadata"].get("namespace"), "%s: %s/%s has no namespace" % (s, d["kind"], d["metadata"]["name"]))
    dep = one(docs, "Deployment", s)
    if not dep: return
    spec = dep["spec"]; pod = spec["template"]
    labels = pod["metadata"]["labels"]
    check(labels.get("app.kubernetes.io/name") == "redis-operator", s + ": operator pods labelled app.kubernetes.io/name=redis-operator")
    check(matches(spec["selector"], labels), s + ": Deployment selector matches its pods")
    check(not matches(spec["selector"], DATA_POD), s + ": Deployment selector must not match Redis data pods")
    check(spec["replicas"] == expect["replicas"], "%s: replicas %s != %s" % (s, spec["replicas"], expect["replicas"]))
    ps = pod["spec"]
    check(ps.get("automountServiceAccountToken") is True, s + ": automountServiceAccountToken true (the operator needs its token)")
    check(ps["securityContext"].get("runAsNonRoot") is True, s + ": pod runAsNonRoot")
    check(ps["securityContext"].get("seccompProfile", {}).get("type") == "RuntimeDefault", s + ": pod seccomp RuntimeDefault")
    (c,) = ps["containers"]
    check(c["image"] == expect["image"], "%s: image %s != %s" % (s, c["image"], expect["image"]))
    check(c["command"] == ["redis-operator", "run"], s + ": command redis-operator run")
    args = c["args"]
    for a in ["--metrics-addr=0.0.0.0:8080", "--log-format=" + expect["log"], "--redis-image=" + expect["redis"],
              "--instance-manager-image=" + expect["im"]]:
        check(a in args, "%s: arg %s missing in %s" % (s, a, args))
    ns_args = [a for a in args if a.startswith("--namespace")]
    check(ns_args == ([("--namespace=" + expect["watch"])] if expect["watch"] else []), "%s: namespace args %s" % (s, ns_args))
    env = {e["name"]: e for e in c.get("env", [])}
    check(env.get("POD_NAMESPACE", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.namespace",
          s + ": env POD_NAMESPACE from metadata.namespace")
    # The Lease identity: a shared default would let every replica believe it leads.
    check(env.get("POD_NAME", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name",
          s + ": env POD_NAME from metadata.name (leader-election identity)")
    check(("--no-leader-election" in args) == (not expect["leader"]), s + ": --no-leader-election only when leaderElection.enabled=false")
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    check(ports.get("metrics") == 8080, s + ": container port metrics 8080")
    check(c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}, s + ": liveness /healthz")
    check(c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}, s + ": readiness /readyz")
    sc = c["securityContext"]
    check(sc.get("runAsNonRoot") is True and sc.get("readOnlyRootFilesystem") is True
          and sc.get("allowPrivilegeEscalation") is False and sc.get("capabilities", {}).get("drop") == ["ALL"]
          and sc.get("seccompProfile", {}).get("type") == "RuntimeDefault" and not sc.get("capabilities", {}).get("add"),
          s + ": hardened container securityContext")
    r = c.get("resources", {})
    check(all(k in r.get(t, {}) for t in ("requests", "limits") for k in ("cpu", "memory")), s + ": cpu/memory requests and limits")
    # ServiceAccount and RBAC.
    sa = ps["serviceAccountName"]
    one(docs, "ServiceAccount", s, name=sa)
    def subjects_ok(b):
        return b["subjects"] == [{"kind": "ServiceAccount", "name": sa, "namespace": NS}]
    lroles = [d for d in objs(docs, "Role") if d["metadata"]["name"].endswith("-leader-election")]
    check(len(lroles) == (1 if expect["leader"] else 0), s + ": leader-election Role only with leader election")
    check(all(r["metadata"]["namespace"] == NS for r in lroles), s + ": leader-election Role in the release namespace")
    if lroles:
        check(triples(lroles[0]["rules"]) == LEADER_RBAC, "%s: leader-election rules %s" % (s, sorted(triples(lroles[0]["rules"]), key=str)))
        lb = [b for b in objs(docs, "RoleBinding") if b["roleRef"]["name"] == lroles[0]["metadata"]["name"]]
        check(len(lb) == 1 and lb[0]["metadata"]["namespace"] == NS and subjects_ok(lb[0]), s + ": leader-election RoleBinding")
    # API Priority and Fairness: the operator's Lease requests, and only those, in the built-in
    # leader-election priority level, ahead of the service-accounts schema.
    fss = objs(docs, "FlowSchema")
    check(len(fss) == (1 if expect["leader"] else 0), s + ": leader-election FlowSchema only with leader election")
    if fss:
        fs = fss[0]["spec"]
        rule = fs["rules"][0] if len(fs["rules"]) == 1 else {}
        check(fs["priorityLevelConfiguration"] == {"name": "leader-election"} and 100 < fs["matchingPrecedence"] < 9000,
              s + ": FlowSchema -> leader-election, precedence %r" % fs.get("matchingPrecedence"))
        check(rule.get("subjects") == [{"kind": "ServiceAccount", "serviceAccount": {"name": sa, "namespace": NS}}],
              s + ": FlowSchema subject is the operator's ServiceAccount")
        check(rule.get("resourceRules") == [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                                             "namespaces": [NS], "verbs": ["get", "create", "update"]}]
              and not rule.get("nonResourceRules"),
              s + ": FlowSchema matches the Lease requests only: %r" % rule)
    if expect["watch"]:
        check(not objs(docs, "ClusterRole") and not objs(docs, "ClusterRoleBinding"), s + ": namespaced install renders no ClusterRole(Binding)")
        roles = [d for d in objs(docs, "Role") if d not in lroles]
        check(len(roles) == 1 and roles[0]["metadata"]["namespace"] == expect["watch"], s + ": operator Role in the watched namespace")
        binds = [b for b in objs(docs, "RoleBinding") if roles and b["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": roles[0]["metadata"]["name"]}]
        check(len(binds) == 1 and binds[0]["metadata"]["namespace"] == expect["watch"] and subjects_ok(binds[0]), s + ": operator RoleBinding")
    else:
        AGG = "rbac.authorization.k8s.io/aggregate-to-"
        user = {d["metadata"]["name"]: d for d in objs(docs, "ClusterRole")
                if any(k.startswith(AGG) for k in d["metadata"].get("labels", {}))}
        roles = [d for d in objs(docs, "ClusterRole") if d["metadata"]["name"] not in user]
        check(len(roles) == 1, s + ": one ClusterRole for the operator")
        # What the built-in view/edit/admin roles gain (rbac.aggregateToDefaultRoles, default on).
        want_user = {
            release_name + "-view": ({"view", "edit", "admin"},
                {("redis.io", r, v, None) for r in ["redisclusters", "redisclusters/status"] for v in ["get", "list", "watch"]}),
            release_name + "-edit": ({"edit", "admin"},
                {("redis.io", "redisclusters", v, None) for v in ["create", "update", "patch", "delete", "deletecollection"]}),
        }
        check(set(user) == set(want_user), "%s: aggregated ClusterRoles %s, want %s" % (s, sorted(user), sorted(want_user)))
        for name, (aggs, rules) in want_user.items():
            if name in user:
                labels = user[name]["metadata"]["labels"]
                got_aggs = {k[len(AGG):] for k, v in labels.items() if k.startswith(AGG) and v == "true"}
                check(got_aggs == aggs, "%s: %s aggregates to %s, want %s" % (s, name, sorted(got_aggs), sorted(aggs)))
                check(triples(user[name]["rules"]) == rules, "%s: %s rules %s" % (s, name, sorted(triples(user[name]["rules"]), key=str)))
        check(not objs(docs, "ClusterRoleBinding") or all(b["roleRef"]["name"] not in user for b in objs(docs, "ClusterRoleBinding")),
              s + ": the aggregated ClusterRoles are bound to no one by the chart")
        binds = [b for b in objs(docs, "ClusterRoleBinding") if roles and b["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": roles[0]["metadata"]["name"]}]
        check(len(binds) == 1 and subjects_ok(binds[0]), s + ": ClusterRoleBinding to the operator ServiceAccount")
    if roles:
        got = triples(roles[0]["rules"])
        extra, missing = got - OPERATOR_RBAC, OPERATOR_RBAC - got
        check(not extra, "%s: RBAC grants more than the operator needs: %s" % (s, sorted(extra, key=str)))
        check(not missing, "%s: RBAC lacks what the operator needs: %s" % (s, sorted(missing, key=str)))
    # Metrics Service, NetworkPolicy, PDB.
    svc = one(docs, "Service", s)
    if svc:
        check(matches({"matchLabels": svc["spec"]["selector"]}, labels), s + ": metrics Service selects the operator pods")
        check(svc["spec"]["ports"][0]["targetPort"] == "metrics" and svc["spec"]["ports"][0]["name"] == "metrics", s + ": metrics Service port")
    np = one(docs, "NetworkPolicy", s)
    if np:
        check(matches(np["spec"]["podSelector"], labels), s + ": NetworkPolicy selects the operator pods")
        check([p["port"] for i in np["spec"]["ingress"] for p in i["ports"]] == ["metrics"], s + ": NetworkPolicy opens only the metrics port")
    pdbs = objs(docs, "PodDisruptionBudget")
    check(len(pdbs) == (1 if expect["replicas"] > 1 else 0), s + ": PodDisruptionBudget only with more than one replica")
    for p in pdbs:
        check(matches(p["spec"]["selector"], labels), s + ": PDB selects the operator pods")
    # Monitoring.
    mon = [d for d in docs if d["apiVersion"].startswith("monitoring.coreos.com/")]
    dash = [d for d in objs(docs, "ConfigMap") if d["metadata"].get("labels", {}).get("grafana_dashboard") == "1"]
    if not expect.get("monitoring"):
        check(not mon and not dash, s + ": no monitoring objects by default")
        return
    pms = [d for d in objs(docs, "PodMonitor") if d["metadata"]["name"].endswith("-instances")]
    check(len(pms) == 1, s + ": PodMonitor for the instance managers")
    for pm in pms:
        check(matches(pm["spec"]["selector"], DATA_POD), s + ": instance PodMonitor selects the Redis data pods")
        check(not matches(pm["spec"]["selector"], labels), s + ": instance PodMonitor does not select the operator")
        (ep,) = pm["spec"]["podMetricsEndpoints"]
        check(ep["port"] == "metrics" and ep["path"] == "/metrics" and ep["honorLabels"] is True, s + ": PodMonitor port metrics, /metrics, honorLabels")
        check(pm["spec"]["namespaceSelector"] == expect["monitor_ns"], "%s: PodMonitor namespaceSelector %s" % (s, pm["spec"]["namespaceSelector"]))
    return mon, dash, labels, svc

def prometheus_rule(s, docs, threshold, lag_for, down_for, backlog=60, backlog_for="10m"):
    pr = one(docs, "PrometheusRule", s)
    if not pr: return None
    check([g["name"] for g in pr["spec"]["groups"]] == ["redis.replication", "redis.replication.capacity"], s + ": rule groups")
    g, cap = pr["spec"]["groups"][0], pr["spec"]["groups"][-1]
    (short,) = cap["rules"]
    check(short.get("alert") == "RedisReplicationBacklogShort"
          and short.get("expr") == "redis_replication_backlog_outage_seconds < %d" % backlog
          and short.get("for") == backlog_for and short.get("labels") == {"severity": "warning"},
          "%s: backlog alert %r" % (s, short))
    check(short.get("annotations", {}).get("summary") == BACKLOG_SUMMARY, "%s: backlog summary %r (template escaping)" % (s, short.get("annotations")))
    rules = {r["alert"]: r for r in g["rules"]}
    check(sorted(rules) == ["RedisReplicationDown", "RedisReplicationLagHigh"], s + ": alert names")
    lag, down = rules.get("RedisReplicationLagHigh", {}), rules.get("RedisReplicationDown", {})
    check(lag.get("expr") == "redis_replication_lag_bytes > %d" % threshold, "%s: lag expr %r" % (s, lag.get("expr")))
    check(lag.get("for") == lag_for and lag.get("labels") == {"severity": "warning"}, s + ": lag for/severity")
    check(lag.get("annotations", {}).get("summary") == LAG_SUMMARY, "%s: lag summary %r (Helm/Prometheus template escaping)" % (s, lag.get("annotations")))
    check(down.get("expr") == "redis_master_link_up == 0", "%s: down expr %r" % (s, down.get("expr")))
    check(down.get("for") == down_for and down.get("labels") == {"severity": "critical"}, s + ": down for/severity")
    check(down.get("annotations", {}).get("summary") == DOWN_SUMMARY, "%s: down summary %r (Helm/Prometheus template escaping)" % (s, down.get("annotations")))
    return pr["spec"]

base = {"replicas": 2, "leader": True, "image": "ghcr.io/example/redis-operator:0.1.0", "log": "json", "redis": "redis:7.2",
        "im": "ghcr.io/example/redis-operator:0.1.0", "watch": None}
sets = sorted(f[:-5] for f in os.listdir(render))
known = {"defaults", "namespaced", "monitoring", "custom-thresholds", "digest"}
check(set(sets) == known, "value sets %s: add assertions to hack/test-chart.sh for new ones" % sets)

common("defaults", load("defaults"), base)

docs = load("namespaced")
common("namespaced", docs, dict(base, watch="redis-apps", monitoring=True, monitor_ns={"matchNames": ["redis-apps"]}))

docs = load("digest")
common("digest", docs, dict(base, image="ghcr.io/example/redis-operator@sha256:" + "0123456789abcdef" * 4))

docs = load("monitoring")
res = common("monitoring", docs, dict(base, monitoring=True, monitor_ns={"any": True}))
if res:
    mon, dash, labels, svc = res
    sm = one(docs, "ServiceMonitor", "monitoring")
    if sm and svc:
        check(matches(sm["spec"]["selector"], svc["metadata"]["labels"]), "monitoring: ServiceMonitor selects the metrics Service")
        check(sm["spec"]["endpoints"][0]["port"] == svc["spec"]["ports"][0]["name"], "monitoring: ServiceMonitor port is the Service's port name")
        check(sm["spec"]["endpoints"][0].get("honorLabels") is True, "monitoring: operator ServiceMonitor keeps the series' namespace label")
    for m in mon:
        check(m["metadata"]["labels"].get("release") == "kube-prometheus-stack" or m["kind"] == "ServiceMonitor",
              "monitoring: %s carries the extra labels" % m["kind"])
    spec = prometheus_rule("monitoring", docs, 10485760, "5m", "1m")
    if spec:
        yaml.safe_dump(spec, open(os.path.join(prom, "redis-replication-rules.yaml"), "w"), sort_keys=False)
        standalone = yaml.safe_load(open("config/prometheus/redis-replication-rules.yaml"))
        check(standalone == spec, "config/prometheus/redis-replication-rules.yaml differs from the chart's default PrometheusRule")
    check(len(dash) == 1, "monitoring: one dashboard ConfigMap labelled grafana_dashboard=1")
    for d in dash:
        raw = d["data"]["redis-replication.json"]
        check(raw == open(os.path.join(chart, "dashboards/redis-replication.json")).read().rstrip("\n"),
              "monitoring: dashboard ConfigMap carries dashboards/redis-replication.json unchanged")
        j = json.loads(raw)
        exprs = " ".join(t["expr"] for p in j["panels"] for t in p.get("targets", []))
        for m in METRICS:
            check(m in exprs, "monitoring: dashboard has no panel for %s" % m)
        check("{{pod}}" in raw or "{{namespace}}/{{pod}}" in raw, "monitoring: Grafana legend templates survived Helm")

docs = load("custom-thresholds")
common("custom-thresholds", docs, dict(base, replicas=1, leader=False, log="text", redis="registry.example.com/redis:7.2.5",
       im="registry.example.com/redis-instance-manager:0.1.0-rc1", monitoring=True,
       monitor_ns={"matchNames": ["production", "dr"]}))
opm = [d for d in objs(docs, "PodMonitor") if not d["metadata"]["name"].endswith("-instances")]
check(len(opm) == 1 and not objs(docs, "ServiceMonitor"), "custom-thresholds: operator scraped by a PodMonitor (kind=PodMonitor)")
spec = prometheus_rule("custom-thresholds", docs, 1048576, "10m", "2m", 120, "15m")
if spec:
    yaml.safe_dump(spec, open(os.path.join(prom, "custom-thresholds-rules.yaml"), "w"), sort_keys=False)

if failures:
    for f in failures:
        print("FAIL: " + f, file=sys.stderr)
    sys.exit(1)
print("  ok: %d value sets: labels, image, args, env, probes, securityContext, resources, exact RBAC rules," % len(sets))
print("      namespaced vs cluster-wide RBAC, leader-election Role, Service/NetworkPolicy/PDB selectors,")
print("      PodMonitor selects data pods with honorLabels, ServiceMonitor/PodMonitor for the operator,")
print("      PrometheusRule names/exprs/for/severity/summaries (template escaping), custom thresholds,")
print("      dashboard ConfigMap; config/prometheus/redis-replication-rules.yaml == chart rendering")
PY

step "6. values.schema.json rejects bad values (negative tests)"
# Each case: the --set arguments, then a string the error must contain.
neg() { # neg <expected-in-error> <helm args...>
  local want=$1; shift
  if helm template "$release" "$chart" --namespace "$namespace" "$@" >"$tmp/neg.out" 2>&1; then
    die "helm template accepted bad values: $*"
  fi
  grep -qF -- "$want" "$tmp/neg.out" || { cat "$tmp/neg.out"; die "error for '$*' does not mention '$want'"; }
  ok "rejected $* -> $(grep -m1 -F -- "$want" "$tmp/neg.out" | sed 's/^ *//')"
}
neg "replicationLagThresholdBytes" --set monitoring.prometheusRule.replicationLagThresholdBytes=-1
neg "replicationLagThresholdBytes" --set-string monitoring.prometheusRule.replicationLagThresholdBytes=10MiB
printf 'monitoring:\n  prometheusRule:\n    replicationLagThresholdBytes: 1.5\n' >"$tmp/float-values.yaml"
neg "replicationLagThresholdBytes" -f "$tmp/float-values.yaml"
neg "replicationLagFor" --set "monitoring.prometheusRule.replicationLagFor=5 minutes"
neg "replicationDownFor" --set monitoring.prometheusRule.replicationDownFor=
neg "replicaCount" --set replicaCount=0
neg "logFormat" --set operator.logFormat=xml
neg "pullPolicy" --set image.pullPolicy=Sometimes
neg "namespaced" --set-string rbac.namespaced=yes
neg "namespace" --set rbac.namespace=true
neg "kind" --set monitoring.operator.kind=Probe
neg "metricsService.enabled=true" --set monitoring.operator.enabled=true --set metricsService.enabled=false
neg "leaderElection.enabled=false needs replicaCount=1" --set leaderElection.enabled=false

step "7. checkov (kubernetes framework) on every rendering"
# Skipped checks, each with its reason:
#   CKV_K8S_38 (service account token mounted): the operator is a Kubernetes API client; it
#              cannot work without its token (automountServiceAccountToken: true on purpose).
#   CKV_K8S_43 (image by digest) and CKV_K8S_15 (pullPolicy Always): the defaults use the
#              versioned tag (appVersion) with IfNotPresent, because no digest can be known
#              before the image is published. The chart supports image.digest and
#              image.pullPolicy=Always; the 'digest' value set below is scanned WITHOUT these
#              two skips to prove it.
mkdir -p "$tmp/checkov-all" "$tmp/checkov-digest"
for s in "${sets[@]}"; do cp "$tmp/split/$s.k8s.yaml" "$tmp/checkov-all/$s.yaml"; done
cp "$tmp/split/digest.k8s.yaml" "$tmp/checkov-digest/digest.yaml"
run_checkov() { # run_checkov <dir> <skips>
  checkov -d "$1" --framework kubernetes --compact --quiet --skip-download --skip-check "$2" >"$tmp/checkov.out" 2>&1 \
    || { cat "$tmp/checkov.out"; die "checkov found failures in $(basename "$1") (skips: $2)"; }
  grep -q 'Failed checks: 0,' "$tmp/checkov.out" || { cat "$tmp/checkov.out"; die "checkov: unexpected output"; }
  ok "checkov $(basename "$1"): $(grep -m1 -o 'Passed checks: [0-9]*, Failed checks: [0-9]*, Skipped checks: [0-9]*' "$tmp/checkov.out") (excluded with --skip-check: $2)"
}
run_checkov "$tmp/checkov-all" CKV_K8S_38,CKV_K8S_43,CKV_K8S_15
run_checkov "$tmp/checkov-digest" CKV_K8S_38

step "8. promtool: rules from the chart's rendered PrometheusRule"
cp config/prometheus/tests/*.test.yaml "$tmp/prom/tests/"
promtool check rules "$tmp/prom/redis-replication-rules.yaml" "$tmp/prom/custom-thresholds-rules.yaml" \
  config/prometheus/redis-replication-rules.yaml >"$tmp/pc.out" 2>&1 || { cat "$tmp/pc.out"; die "promtool check rules"; }
ok "promtool check rules: chart defaults, chart custom thresholds, config/prometheus standalone"
promtool test rules "$tmp/prom/tests/redis-replication.test.yaml" >"$tmp/pt.out" 2>&1 \
  || { cat "$tmp/pt.out"; die "promtool test rules on the chart's default rules"; }
ok "promtool test rules tests/redis-replication.test.yaml on the chart's default rendering"
promtool test rules "$tmp/prom/tests/custom-thresholds.test.yaml" >"$tmp/pt.out" 2>&1 \
  || { cat "$tmp/pt.out"; die "promtool test rules on the chart's custom-threshold rules"; }
ok "promtool test rules tests/custom-thresholds.test.yaml on the chart rendered with ci/custom-thresholds-values.yaml"
promtool test rules config/prometheus/tests/redis-replication.test.yaml >"$tmp/pt.out" 2>&1 \
  || { cat "$tmp/pt.out"; die "promtool test rules on config/prometheus/redis-replication-rules.yaml"; }
ok "promtool test rules tests/redis-replication.test.yaml on config/prometheus/redis-replication-rules.yaml"

printf '\ntest-chart: all checks passed (%d value sets, %d monitoring objects schema-checked) in %ds\n' \
  "${#sets[@]}" "$n_cr" "$(($(date +%s) - start))"
