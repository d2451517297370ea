{{/* Names, labels and the settings file shared by the templates. */}}

{{- define "cloudpilot.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "cloudpilot.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Cluster-scoped objects (ClusterRoles and their bindings) carry the namespace too: one release per namespace. */}}
{{- define "cloudpilot.clusterName" -}}
{{- printf "%s-%s" (include "cloudpilot.fullname" .) .Release.Namespace -}}
{{- end -}}

{{- define "cloudpilot.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "cloudpilot.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "cloudpilot.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cloudpilot.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "cloudpilot.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "cloudpilot.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: cloudpilot
{{- end -}}

{{- define "cloudpilot.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* Whether the PostgreSQL store is configured (a Secret, or store.url in settings). */}}
{{- define "cloudpilot.sharedStore" -}}
{{- if or .Values.secrets.store.existingSecret (get (get .Values.settings "store" | default dict) "url") -}}true{{- end -}}
{{- end -}}

{{/* Checks that stop a render that would deploy something broken, each saying what to change. */}}
{{- define "cloudpilot.checks" -}}
{{- $safety := get .Values.settings "safety" | default dict -}}
{{- if or (hasKey $safety "allow_write") (hasKey $safety "allow_destructive") -}}
{{- fail "settings.safety.allow_write/allow_destructive follow rbac.write.enabled and rbac.destructive.enabled: set those instead, so that the settings and the RBAC agree" -}}
{{- end -}}
{{- if and .Values.rbac.destructive.enabled (not .Values.rbac.write.enabled) -}}
{{- fail "rbac.destructive.enabled needs rbac.write.enabled: deletions are writes too" -}}
{{- end -}}
{{- $grace := add (.Values.lifecycle.preStopSleepSeconds | int) (.Values.server.shutdownGraceSeconds | ceil | int) -}}
{{- if le (.Values.terminationGracePeriodSeconds | int) $grace -}}
{{- fail (printf "terminationGracePeriodSeconds (%d) must exceed lifecycle.preStopSleepSeconds + server.shutdownGraceSeconds (%d), or Kubernetes kills tool calls still finishing" (.Values.terminationGracePeriodSeconds | int) $grace) -}}
{{- end -}}
{{- if and (or .Values.autoscaling.enabled (gt (.Values.replicaCount | int) 1)) (not (include "cloudpilot.sharedStore" .)) -}}
{{- fail "several replicas need the shared PostgreSQL store (secrets.store.existingSecret): with SQLite each pod would keep its own plans, approvals and audit" -}}
{{- end -}}
{{- if and .Values.persistence.existingClaim (or .Values.autoscaling.enabled (gt (.Values.replicaCount | int) 1)) -}}
{{- fail "persistence.existingClaim holds one pod's SQLite store: use it with one replica, or the PostgreSQL store for several" -}}
{{- end -}}
{{- end -}}

{{/* Host headers the server accepts: the public host first (it names the protected resource), then the Service. */}}
{{- define "cloudpilot.allowedHosts" -}}
{{- $svc := include "cloudpilot.fullname" . -}}
{{- $fqdn := printf "%s.%s.svc.%s" $svc .Release.Namespace .Values.clusterDomain -}}
{{- $hosts := list -}}
{{- with .Values.server.publicHost -}}{{- $hosts = append $hosts . -}}{{- end -}}
{{- $hosts = append $hosts (printf "%s:%d" $fqdn (.Values.service.port | int)) -}}
{{- range list $svc (printf "%s.%s" $svc .Release.Namespace) (printf "%s.%s.svc" $svc .Release.Namespace) $fqdn -}}
{{- $hosts = append $hosts . -}}
{{- $hosts = append $hosts (printf "%s:*" .) -}}
{{- end -}}
{{- concat $hosts .Values.server.allowedHosts | uniq | toJson -}}
{{- end -}}

{{/* The settings file: values.settings, with what the chart decides (writes follow the RBAC, paths in the data
volume, the HTTP server) set on top; the event watch leaves Secrets out unless it may read them, keeps its Leases
in the release namespace (the leases Role) and elects a leader per cluster when there are several replicas. */}}
{{- define "cloudpilot.settings" -}}
{{- $s := deepCopy (.Values.settings | default dict) -}}
{{- $server := get $s "server" | default dict -}}
{{- $_ := set $server "port" (.Values.server.port | int) -}}
{{- $_ := set $server "log_format" .Values.server.logFormat -}}
{{- $_ := set $server "shutdown_grace_seconds" .Values.server.shutdownGraceSeconds -}}
{{- $_ := set $server "allowed_hosts" (include "cloudpilot.allowedHosts" . | fromJsonArray) -}}
{{- with .Values.server.toolsets -}}{{- $_ := set $server "toolsets" . -}}{{- end -}}
{{- with .Values.auth.oidc.issuer -}}{{- $_ := set $server "oidc_issuer" . -}}{{- end -}}
{{- with .Values.auth.oidc.audience -}}{{- $_ := set $server "oidc_audience" . -}}{{- end -}}
{{- $_ := set $server "oidc_principal_claim" .Values.auth.oidc.principalClaim -}}
{{- $_ := set $server "oidc_groups_claim" .Values.auth.oidc.groupsClaim -}}
{{- $_ := set $server "insecure_no_auth" .Values.auth.insecureNoAuth -}}
{{- if and (not (hasKey $server "stateless_http")) (or .Values.autoscaling.enabled (gt (.Values.replicaCount | int) 1)) -}}
{{- $_ := set $server "stateless_http" true -}}{{/* behind a Service, any replica answers any request */}}
{{- end -}}
{{- $_ := set $s "server" $server -}}
{{- $safety := get $s "safety" | default dict -}}
{{- $_ := set $safety "allow_write" .Values.rbac.write.enabled -}}
{{- $_ := set $safety "allow_destructive" .Values.rbac.destructive.enabled -}}
{{- $_ := set $s "safety" $safety -}}
{{- $store := get $s "store" | default dict -}}
{{- if not (hasKey $store "path") -}}{{- $_ := set $store "path" "/var/lib/cloudpilot/cloudpilot.db" -}}{{- end -}}
{{- $_ := set $s "store" $store -}}
{{- $agents := get $s "agents" | default dict -}}
{{- if not (hasKey $agents "checkpoint_path") -}}{{- $_ := set $agents "checkpoint_path" "/var/lib/cloudpilot/threads.db" -}}{{- end -}}
{{- $_ := set $s "agents" $agents -}}
{{- $watch := get $s "watch" | default dict -}}
{{- if and (not .Values.rbac.read.secrets) (not (hasKey $watch "sources")) -}}
{{- $_ := set $watch "sources" (list "events" "pods" "nodes" "workloads" "configmaps" "istio") -}}
{{- end -}}
{{- if not (hasKey $watch "lease_namespace") -}}{{- $_ := set $watch "lease_namespace" .Release.Namespace -}}{{- end -}}
{{- if and (not (hasKey $watch "leader_election")) (or .Values.autoscaling.enabled (gt (.Values.replicaCount | int) 1)) -}}
{{- $_ := set $watch "leader_election" true -}}
{{- end -}}
{{- $_ := set $s "watch" $watch -}}
{{- toYaml $s -}}
{{- end -}}
