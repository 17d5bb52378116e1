{{/*
Name of every object of the release: `<release>-operator` (`silo-operator` for release `silo`),
or fullnameOverride. Cluster-scoped objects (ClusterRole, ClusterRoleBinding) carry it too, so
two releases never collide.
*/}}
{{- define "silo.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-operator" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/*
Labels that select the operator's pods. The name is fixed: the NetworkPolicy of every database
server the operator runs admits pods labelled app.kubernetes.io/name=silo-operator in the
operator's namespace.
*/}}
{{- define "silo.selectorLabels" -}}
app.kubernetes.io/name: silo-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "silo.labels" -}}
{{ include "silo.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: silo
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "silo.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- .Values.serviceAccount.name | default (include "silo.fullname" .) -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The operator image: repository:tag (tag defaults to appVersion), or repository@digest. */}}
{{- define "silo.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}
{{- end -}}

{{/* PodDisruptionBudget moved to policy/v1 in Kubernetes 1.21; 1.20 serves only v1beta1. */}}
{{- define "silo.pdbApiVersion" -}}
{{- if semverCompare ">=1.21-0" .Capabilities.KubeVersion.Version -}}
policy/v1
{{- else -}}
policy/v1beta1
{{- end -}}
{{- end -}}
