{{/* Chart name. */}}
{{- define "vlmops.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name: <release>-vlmops, or the release name when it already contains the chart name. */}}
{{- define "vlmops.fullname" -}}
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

{{- define "vlmops.selectorLabels" -}}
app.kubernetes.io/name: {{ include "vlmops.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "vlmops.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "vlmops.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: vlmops
{{- end -}}

{{- define "vlmops.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "vlmops.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Operator image reference (digest wins over tag). */}}
{{- define "vlmops.image" -}}
{{- $img := .Values.operator.image -}}
{{- if $img.digest -}}
{{- printf "%s@%s" $img.repository $img.digest -}}
{{- else -}}
{{- printf "%s:%s" $img.repository (default .Chart.AppVersion $img.tag) -}}
{{- end -}}
{{- end -}}

{{/* Default job image for one of data|dataGpu|train|eval|evalVllm (vlmops-data-gpu, vlmops-eval-vllm). Usage: include "vlmops.jobImage" (list . "data") */}}
{{- define "vlmops.jobImage" -}}
{{- $root := index . 0 -}}
{{- $kind := index . 1 -}}
{{- $imgs := $root.Values.jobs.images -}}
{{- $explicit := index $imgs $kind -}}
{{- if $explicit -}}
{{- $explicit -}}
{{- else -}}
{{- printf "%s/vlmops-%s:%s" (trimSuffix "/" $imgs.registry) (kebabcase $kind) (default $root.Chart.AppVersion $imgs.tag) -}}
{{- end -}}
{{- end -}}

{{/* Namespaces the operator watches when not cluster-wide (default: the release namespace). */}}
{{- define "vlmops.watchNamespaces" -}}
{{- if .Values.watch.namespaces -}}
{{- toJson (uniq .Values.watch.namespaces) -}}
{{- else -}}
{{- toJson (list .Release.Namespace) -}}
{{- end -}}
{{- end -}}

{{/* The plurals of vlmops.dev (a JSON list), read from the chart's CRDs: a new kind needs no edit here. */}}
{{- define "vlmops.plurals" -}}
{{- $plurals := list -}}
{{- range $path, $_ := .Files.Glob "files/crds/*.yaml" -}}
{{- $plurals = append $plurals ($.Files.Get $path | fromYaml).spec.names.plural -}}
{{- end -}}
{{- toJson $plurals -}}
{{- end -}}

{{/* A subresource of each (a JSON list): include "vlmops.subresources" (list . "status"). */}}
{{- define "vlmops.subresources" -}}
{{- $root := index . 0 -}}
{{- $sub := index . 1 -}}
{{- $out := list -}}
{{- range (include "vlmops.plurals" $root | fromJsonArray) -}}
{{- $out = append $out (printf "%s/%s" . $sub) -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{/* Namespaced rules the operator needs (used by the ClusterRole or each Role). Keep in sync
     with tests/chart/test_rbac.py REQUIRED_PERMISSIONS (operator/vlmops/kube.py + kopf). */}}
{{- define "vlmops.namespacedRules" -}}
- apiGroups: ["vlmops.dev"]
  resources: {{ include "vlmops.plurals" . }}
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["vlmops.dev"]
  resources: {{ include "vlmops.subresources" (list . "status") }}
  verbs: ["get", "patch"]
# Children carry ownerReferences with blockOwnerDeletion: with the OwnerReferencesPermissionEnforcement
# admission plugin, creating them needs update on the owner's finalizers (never called otherwise).
- apiGroups: ["vlmops.dev"]
  resources: {{ include "vlmops.subresources" (list . "finalizers") }}
  verbs: ["update"]
# delete: a spec change stops the older generation's running children before the new one starts.
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["kubeflow.org"]
  resources: ["pytorchjobs"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["trainer.kubeflow.org"]
  resources: ["trainjobs"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- end -}}

{{/* Cluster-scoped reads kopf needs for namespace and CRD discovery. */}}
{{- define "vlmops.clusterRules" -}}
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["get", "list", "watch"]
{{- end -}}

{{/* /etc/vlmops/config.yaml: the operator's defaults for child Jobs (BuildContext). */}}
{{- define "vlmops.config" -}}
images:
  data: {{ include "vlmops.jobImage" (list . "data") | quote }}
  dataGpu: {{ include "vlmops.jobImage" (list . "dataGpu") | quote }}
  train: {{ include "vlmops.jobImage" (list . "train") | quote }}
  eval: {{ include "vlmops.jobImage" (list . "eval") | quote }}
  evalVllm: {{ include "vlmops.jobImage" (list . "evalVllm") | quote }}
{{- $s := .Values.jobs.storage }}
{{- if or $s.endpointURL $s.region $s.secretName }}
storage:
  {{- with $s.endpointURL }}
  endpointURL: {{ . | quote }}
  {{- end }}
  {{- with $s.region }}
  region: {{ . | quote }}
  {{- end }}
  {{- with $s.secretName }}
  secretName: {{ . | quote }}
  {{- end }}
{{- else }}
storage: null
{{- end }}
storagePrefix: {{ if .Values.jobs.storage.prefix }}{{ .Values.jobs.storage.prefix | quote }}{{ else }}null{{ end }}
jobServiceAccount: {{ if .Values.jobs.serviceAccountName }}{{ .Values.jobs.serviceAccountName | quote }}{{ else }}null{{ end }}
resources: {{ .Values.jobs.resources | toJson }}
scheduling: {{ if .Values.jobs.scheduling }}{{ .Values.jobs.scheduling | toJson }}{{ else }}null{{ end }}
ttlSecondsAfterFinished: {{ if kindIs "invalid" .Values.jobs.ttlSecondsAfterFinished }}null{{ else }}{{ .Values.jobs.ttlSecondsAfterFinished }}{{ end }}
trainJobRuntime: {{ .Values.training.trainJob.runtimeName | quote }}
{{- $p := .Values.policy }}
{{- $storage := $p.extraStoragePrefixes }}
{{- if .Values.jobs.storage.prefix }}{{ $storage = prepend $storage .Values.jobs.storage.prefix }}{{ end }}
policy:
  imagePrefixes: {{ prepend $p.extraImagePrefixes (printf "%s/" (trimSuffix "/" .Values.jobs.images.registry)) | toJson }}
  storagePrefixes: {{ if $storage }}{{ $storage | toJson }}{{ else }}null{{ end }}
  allowOverrides: {{ $p.allowOverrides | toJson }}
  maxShards: {{ $p.maxShards }}
  maxNodes: {{ $p.maxNodes }}
  maxGpus: {{ $p.maxGpus }}
{{- end -}}
