{{/* Chart name, truncated to the 63 characters Kubernetes allows in a label value. */}}
{{- define "redis-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name of the release's objects. */}}
{{- define "redis-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "redis-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Selector labels. app.kubernetes.io/name is always redis-operator, whatever nameOverride says:
the spec's troubleshooting step runs `kubectl logs -l app.kubernetes.io/name=redis-operator`.
*/}}
{{- define "redis-operator.selectorLabels" -}}
app.kubernetes.io/name: redis-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "redis-operator.labels" -}}
helm.sh/chart: {{ include "redis-operator.chart" . }}
{{ include "redis-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: redis-operator
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "redis-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "redis-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The namespace the operator watches when rbac.namespaced is true. */}}
{{- define "redis-operator.watchNamespace" -}}
{{- default .Release.Namespace .Values.rbac.watchNamespace }}
{{- end }}

{{- define "redis-operator.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* The instance-manager sidecar image: same repository and tag as the operator by default. */}}
{{- define "redis-operator.instanceManagerImage" -}}
{{- $repo := default .Values.image.repository .Values.operator.instanceManagerImage.repository }}
{{- $tag := default (default .Chart.AppVersion .Values.image.tag) .Values.operator.instanceManagerImage.tag }}
{{- printf "%s:%s" $repo $tag }}
{{- end }}

{{/*
Label selector of the Redis data pods the operator creates (every RedisCluster).
*/}}
{{- define "redis-operator.dataPodSelector" -}}
matchLabels:
  app.kubernetes.io/name: redis
  app.kubernetes.io/component: redis
  app.kubernetes.io/managed-by: redis-operator
matchExpressions:
  - key: redis.io/cluster
    operator: Exists
{{- end }}

{{/*
namespaceSelector for the PodMonitor of the data pods: explicit list, else the watched
namespace (namespaced install), else every namespace.
*/}}
{{- define "redis-operator.dataNamespaceSelector" -}}
{{- if .Values.monitoring.instances.namespaces }}
matchNames:
{{- range .Values.monitoring.instances.namespaces }}
  - {{ . | quote }}
{{- end }}
{{- else if .Values.rbac.namespaced }}
matchNames:
  - {{ include "redis-operator.watchNamespace" . | quote }}
{{- else }}
any: true
{{- end }}
{{- end }}

{{/*
The operator's permissions, least privilege, from what the operator reads and writes. The same
rules back the ClusterRole (cluster-wide install) and the Role (rbac.namespaced).
*/}}
{{- define "redis-operator.rules" -}}
# Exactly what crates/redis-operator calls (hack/test-chart.sh checks this list; docs/install.md
# says why each is there). RedisClusters: watched; status patched. No finalizer is used.
- apiGroups: ["redis.io"]
  resources: ["redisclusters"]
  verbs: ["list", "watch"]
- apiGroups: ["redis.io"]
  resources: ["redisclusters/status"]
  verbs: ["patch"]
# The objects it owns carry a controller ownerReference to the RedisCluster with
# blockOwnerDeletion: clusters enforcing OwnerReferencesPermissionEnforcement (e.g. OpenShift)
# require update on the owner's finalizers subresource for that.
- apiGroups: ["redis.io"]
  resources: ["redisclusters/finalizers"]
  verbs: ["update"]
# Data pods: watched, and their role label and topology annotation patched. list/watch is also
# what the per-cluster Role the operator creates grants its instance managers (RBAC forbids
# granting more than one holds). Pods and their volumes are created and deleted by the
# StatefulSet controller, never by the operator.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch", "patch"]
# Owned objects are listed and watched (the reconciler reads them from its watch caches, never
# with a GET), and server-side applied when they differ: created or patched. None is deleted by
# the operator: they go with their RedisCluster (ownerReferences, garbage collection).
- apiGroups: [""]
  resources: ["services", "configmaps", "serviceaccounts"]
  verbs: ["list", "watch", "create", "patch"]
# Referenced Secrets (authSecret, replicaMode.source.authSecretName, tlsSecret) are read one by
# name; the operator never lists, watches or writes Secrets.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
# Per-cluster Role + RoleBinding letting the instance managers read their own pods.
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["roles", "rolebindings"]
  verbs: ["list", "watch", "create", "patch"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["list", "watch", "create", "patch"]
# Each cluster's StatefulSet (stable pod names, a PVC per pod) and the NetworkPolicy of its
# Redis pods.
- apiGroups: ["apps"]
  resources: ["statefulsets"]
  verbs: ["list", "watch", "create", "patch"]
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["list", "watch", "create", "patch"]
# One Event per occurrence, never folded into a series (platform/kube.rs: publish_event).
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create"]
{{- end }}
