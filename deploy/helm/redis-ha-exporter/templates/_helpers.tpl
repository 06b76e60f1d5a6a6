{{/* The chart's name: the app.kubernetes.io/name label, which the
ServiceMonitor turns into job="redis-ha-exporter", as the rules expect. */}}
{{- define "redis-ha-exporter.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "redis-ha-exporter.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains (include "redis-ha-exporter.name" .) .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "redis-ha-exporter.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "redis-ha-exporter.selectorLabels" -}}
app.kubernetes.io/name: {{ include "redis-ha-exporter.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "redis-ha-exporter.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "redis-ha-exporter.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The Secret mounted at auth.mountPath, if any. */}}
{{- define "redis-ha-exporter.authSecret" -}}
{{- if .Values.auth.existingSecret }}
{{- .Values.auth.existingSecret }}
{{- else if .Values.auth.secrets }}
{{- printf "%s-auth" (include "redis-ha-exporter.fullname" .) }}
{{- end }}
{{- end }}

{{- define "redis-ha-exporter.webSecret" -}}
{{- default (printf "%s-web" (include "redis-ha-exporter.fullname" .)) .Values.webConfig.existingSecret }}
{{- end }}

{{/* (list MAP DIR): sets each *_file key of MAP holding a relative path
to DIR/path, in place: a key of the auth Secret becomes its mounted file. */}}
{{- define "redis-ha-exporter.secretPaths" -}}
{{- $m := index . 0 }}
{{- $dir := index . 1 }}
{{- range $k, $v := $m }}
{{- if and (hasSuffix "_file" $k) (kindIs "string" $v) (not (hasPrefix "/" $v)) }}
{{- $_ := set $m $k (printf "%s/%s" $dir $v) }}
{{- end }}
{{- end }}
{{- end }}

{{/* The agent's config.yaml. */}}
{{- define "redis-ha-exporter.config" -}}
{{- $dir := .Values.auth.mountPath }}
{{- $deployments := list }}
{{- range .Values.deployments }}
{{- $d := deepCopy . }}
{{- range $key := list "auth" "sentinel_auth" }}
{{- if hasKey $d $key }}
{{- $_ := include "redis-ha-exporter.secretPaths" (list (get $d $key) $dir) }}
{{- end }}
{{- end }}
{{- $deployments = append $deployments $d }}
{{- end }}
{{- if not $deployments }}
{{- fail "deployments: give at least one sentinel or cluster deployment to watch" }}
{{- end }}
{{- $receivers := list }}
{{- range .Values.alerts.receivers }}
{{- $r := deepCopy . }}
{{- $_ := include "redis-ha-exporter.secretPaths" (list $r $dir) }}
{{- $receivers = append $receivers $r }}
{{- end }}
{{- $alerts := dict "state_dir" "/var/lib/redis-ha-exporter" }}
{{- with .Values.alerts.rules }}{{ $_ := set $alerts "rules" . }}{{ end }}
{{- if $receivers }}{{ $_ := set $alerts "receivers" $receivers }}{{ end }}
{{- with .Values.alerts.routes }}{{ $_ := set $alerts "routes" . }}{{ end }}
{{- with .Values.alerts.externalUrl }}{{ $_ := set $alerts "external_url" . }}{{ end }}
{{- $config := deepCopy .Values.config }}
{{- $timelines := deepCopy (get $config "timelines" | default dict) }}
{{- $_ := set $timelines "path" "/var/lib/redis-ha-exporter/timelines.jsonl" }}
{{- $_ := set $config "timelines" $timelines }}
{{- $_ := set $config "alerts" $alerts }}
{{- $_ := set $config "listen" "0.0.0.0:9478" }}
{{- if .Values.webConfig.enabled }}
{{- $_ := set $config "web_config_file" (printf "%s/web.yml" .Values.webConfig.mountPath) }}
{{- end }}
{{- $_ := set $config "deployments" $deployments }}
{{- toYaml $config }}
{{- end }}
