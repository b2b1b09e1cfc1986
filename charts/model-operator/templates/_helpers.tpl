{{/* The chart's name, shortened to fit a label value. */}}
{{- define "model-operator.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Names of namespaced objects: the release name, with the chart's name
unless the release name already contains it. */}}
{{- define "model-operator.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Names of cluster-scoped objects also carry the release namespace: two
releases of the same name in different namespaces must not share them. */}}
{{- define "model-operator.clusterName" -}}
{{- printf "%s-%s" .Release.Namespace (include "model-operator.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "model-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "model-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "model-operator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "model-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "model-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "model-operator.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "model-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* host:port for a listen address; IPv6 hosts need brackets. */}}
{{- define "model-operator.addr" -}}
{{- $host := index . 0 -}}
{{- if contains ":" $host -}}
{{- printf "[%s]:%v" $host (index . 1) -}}
{{- else -}}
{{- printf "%s:%v" $host (index . 1) -}}
{{- end -}}
{{- end -}}

{{/* What the operator does with ModelDeployments and their children; the
same rules whether granted cluster-wide or per namespace. Read
src/controller before adding anything: only what the code uses. */}}
{{- define "model-operator.rules" -}}
# Watched (list/watch); reconciles work from the watch cache, so no get. The
# operator never writes a ModelDeployment's spec: no update, patch or delete.
- apiGroups: ["mlops.dev"]
  resources: ["modeldeployments"]
  verbs: ["list", "watch"]
# Status is written with server-side apply (a patch).
- apiGroups: ["mlops.dev"]
  resources: ["modeldeployments/status"]
  verbs: ["patch"]
# Children carry a controller owner reference with blockOwnerDeletion; API
# servers with the OwnerReferencesPermissionEnforcement admission plugin
# (e.g. OpenShift) require update on the owner's finalizers to set it.
- apiGroups: ["mlops.dev"]
  resources: ["modeldeployments/finalizers"]
  verbs: ["update"]
# Children: cached by label-scoped watches, re-read before an apply, written
# with server-side apply (patch; create when the apply creates the object).
# A canary Deployment is deleted, by uid, when a canary of another revision
# needs its name (a selector cannot change); the admission policy keeps
# deletes to its own objects.
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "list", "watch", "create", "patch"]
# The HPA is deleted when spec.autoscaling is removed.
- apiGroups: ["autoscaling"]
  resources: ["horizontalpodautoscalers"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# The PodDisruptionBudget likewise: deleted when spec.disruptionBudget is
# removed.
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# One ControllerRevision per rollout revision: created, read back on a
# conflict, deleted when the history forgets it.
- apiGroups: ["apps"]
  resources: ["controllerrevisions"]
  verbs: ["get", "list", "watch", "create", "delete"]
# Pod health (crash loops, image pulls) decides rollbacks: read only.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch"]
# kube-runtime's event Recorder creates events.k8s.io/v1 Events and patches
# them when the same event repeats.
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- if empty .Values.secretNamespaces }}
# A Prometheus bearer token or an alert webhook URL, read by the name the
# ModelDeployment gives. get only: never list or watch Secrets. With
# secretNamespaces, only there (templates/secret-rbac.yaml).
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
{{- end }}
{{- if .Values.gatewayAPI.enabled }}
# A canary's Gateway API HTTPRoute, named by the ModelDeployment in its own
# namespace: read once per pass (not watched), and its two backend weights
# set with a JSON patch (docs/canary.md). Never created or deleted.
- apiGroups: ["gateway.networking.k8s.io"]
  resources: ["httproutes"]
  verbs: ["get", "patch"]
{{- end }}
{{- end -}}
