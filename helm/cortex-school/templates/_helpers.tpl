{{- define "cortex.name" -}}cortex-school{{- end -}}

{{- define "cortex.fullname" -}}
{{- if eq .Release.Name "cortex-school" -}}cortex-school{{- else -}}{{ printf "%s-cortex-school" .Release.Name | trunc 50 | trimSuffix "-" }}{{- end -}}
{{- end -}}

{{- define "cortex.labels" -}}
app.kubernetes.io/name: {{ include "cortex.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "cortex.selector" -}}
app.kubernetes.io/name: {{ include "cortex.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "cortex.containerSecurity" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: [ALL]
{{- end -}}

{{- define "cortex.secretEnv" -}}
{{- $root := .root -}}
{{- range $env, $ref := dict "ANTHROPIC_API_KEY" $root.Values.secrets.anthropic "GITOPS_TOKEN" $root.Values.secrets.gitToken "ALERT_SLACK_WEBHOOK" $root.Values.secrets.slackWebhook "REDIS_PASSWORD" $root.Values.redis.passwordSecret }}
{{- if $ref.name }}
- name: {{ $env }}
  valueFrom:
    secretKeyRef:
      name: {{ $ref.name }}
      key: {{ $ref.key }}
{{- end }}
{{- end }}
{{- end -}}

{{- define "cortex.env" -}}
- name: REDIS_HOST
  value: {{ .Values.redis.host | quote }}
- name: REDIS_PORT
  value: {{ .Values.redis.port | quote }}
- name: REDIS_DB
  value: {{ .Values.redis.db | quote }}
- name: ALLOWED_NAMESPACES
  value: {{ join "," .Values.allowedNamespaces | quote }}
- name: ARGOCD_NAMESPACE
  value: {{ .Values.argocdNamespace | quote }}
- name: ARGOCD_APP_NAMESPACES
  value: {{ join "," .Values.argocdAppNamespaces | quote }}
- name: CORTEX_DATA_DIR
  value: /data
- name: HOME
  value: /tmp
{{- range $k, $v := .Values.settings }}
- name: {{ $k }}
  value: {{ $v | quote }}
{{- end }}
{{- include "cortex.secretEnv" (dict "root" .) }}
{{- end -}}
