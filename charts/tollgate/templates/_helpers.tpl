{{/* tollgate.name is the chart's name, or nameOverride. */}}
{{- define "tollgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
tollgate.fullname names every object: the release name when it contains
the chart's name (`helm install tollgate` gives the Service "tollgate",
the name every proxy example uses), else "<release>-tollgate".
*/}}
{{- define "tollgate.fullname" -}}
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

{{- define "tollgate.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "tollgate.labels" -}}
helm.sh/chart: {{ include "tollgate.chart" . }}
{{ include "tollgate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: tollgate
{{- end }}

{{- define "tollgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tollgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "tollgate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "tollgate.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "tollgate.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* tollgate.host is the Service's in-cluster DNS name. */}}
{{- define "tollgate.host" -}}
{{- printf "%s.%s.svc.cluster.local" (include "tollgate.fullname" .) .Release.Namespace }}
{{- end }}

{{/* tollgate.redisPasswordDir holds the mounted Redis password. */}}
{{- define "tollgate.redisPasswordDir" -}}
/etc/tollgate/redis
{{- end }}

{{/*
tollgate.replicas is replicaCount (helm create's name) when set, else
replicas.
*/}}
{{- define "tollgate.replicas" -}}
{{- if hasKey .Values "replicaCount" }}{{ .Values.replicaCount }}{{ else }}{{ .Values.replicas }}{{ end }}
{{- end }}

{{/*
tollgate.redisServer is the one Redis server's host:port: redis.addr, or
its spelled-out alias redis.address ("" with redis.cluster, where it is
a seed node).
*/}}
{{- define "tollgate.redisServer" -}}
{{- $r := .Values.redis }}
{{- if and $r.addr $r.address (ne $r.addr $r.address) }}
{{- fail "redis.addr and redis.address are the same value: set one" }}
{{- end }}
{{- if not $r.cluster }}
{{- $r.addr | default $r.address | default "" }}
{{- end }}
{{- end }}

{{/*
tollgate.redisCluster is the Redis Cluster's seed nodes, comma-separated:
redis.clusterAddrs (or redis.clusterAddresses), or with redis.cluster
true, redis.addr.
*/}}
{{- define "tollgate.redisCluster" -}}
{{- $r := .Values.redis }}
{{- $seeds := concat ($r.clusterAddrs | default list) ($r.clusterAddresses | default list) }}
{{- if $r.cluster }}
{{- $addr := $r.addr | default $r.address | default "" }}
{{- if and $addr $seeds }}
{{- fail "redis.cluster: set the seed nodes in one of redis.addr and redis.clusterAddrs" }}
{{- end }}
{{- if $addr }}{{ $seeds = list $addr }}{{ end }}
{{- end }}
{{- join "," (uniq $seeds) }}
{{- end }}

{{/*
tollgate.quotaStore is quotaStore, or when that is empty: redis when a
Redis address or cluster is set, else memory.
*/}}
{{- define "tollgate.quotaStore" -}}
{{- if .Values.quotaStore }}{{ .Values.quotaStore }}
{{- else if or (include "tollgate.redisServer" .) (include "tollgate.redisCluster" .) }}redis
{{- else }}memory
{{- end }}
{{- end }}

{{/*
tollgate.validate fails the render on combinations the schema cannot
express, naming the values to change.
*/}}
{{- define "tollgate.validate" -}}
{{- $r := .Values.redis }}
{{- $addr := include "tollgate.redisServer" . }}
{{- $seeds := include "tollgate.redisCluster" . }}
{{- if eq (include "tollgate.quotaStore" .) "redis" }}
{{- if eq (empty $addr) (empty $seeds) }}
{{- fail "quotaStore=redis needs exactly one of redis.addr and redis.clusterAddrs" }}
{{- end }}
{{- else if or $addr $seeds $r.passwordSecret.name }}
{{- fail "redis.addr, redis.clusterAddrs or redis.passwordSecret.name is set but quotaStore is memory: set quotaStore=redis" }}
{{- end }}
{{- end }}

{{/*
tollgate.args are the arguments of `tollgate serve`. With the default
values they equal config/manager's (test/packaging checks it).
*/}}
{{- define "tollgate.args" -}}
- serve
- --kubernetes=true
- --grpc-addr=:50051
- --http-addr=:5001
- --metrics-addr=:8080
- --health-addr=:8081
- --forward-auth={{ .Values.forwardAuth }}
- --default-action={{ .Values.defaultAction }}
- --quota-store={{ include "tollgate.quotaStore" . }}
{{- with include "tollgate.redisServer" . }}
- {{ printf "--redis-addr=%s" . | quote }}
{{- end }}
{{- with include "tollgate.redisCluster" . }}
- {{ printf "--redis-cluster-addrs=%s" . | quote }}
{{- end }}
{{- if .Values.redis.passwordSecret.name }}
- --redis-password-file={{ include "tollgate.redisPasswordDir" . }}/password
{{- end }}
{{- if .Values.redis.tls }}
- --redis-tls=true
{{- end }}
- --on-store-error={{ .Values.onStoreError }}
{{- with .Values.kubernetes.watchNamespace }}
- --namespace={{ . }}
{{- end }}
{{- with .Values.kubernetes.secretLabelSelector }}
- {{ printf "--secret-label-selector=%s" . | quote }}
{{- end }}
- --leader-elect={{ .Values.leaderElection.enabled }}
- --shutdown-delay=0s
- --shutdown-grace={{ .Values.shutdown.graceSeconds }}s
- --log-level={{ .Values.logLevel }}
- --log-format={{ .Values.logFormat }}
{{- range .Values.extraArgs }}
- {{ . | quote }}
{{- end }}
{{- end }}

{{/*
tollgate.rules are what tollgate needs in every namespace it watches; the
same rules as config/rbac/role.yaml's ClusterRole, which controller-gen
generates from the markers in pkg/controller (test/packaging compares them).
*/}}
{{- define "tollgate.rules" -}}
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, list, watch]
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
- apiGroups: [tollgate.dev]
  resources: [authpolicies]
  verbs: [get, list, watch]
- apiGroups: [tollgate.dev]
  resources: [authpolicies/status]
  verbs: [patch, update]
{{- end }}
