{{/*
Chart name ("pipeserve").
*/}}
{{- define "pipeserve.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
InferenceService name: .Values.name, else the model's name. KServe wants a DNS-1035 label.
*/}}
{{- define "pipeserve.fullname" -}}
{{- default .Values.model.name .Values.name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "pipeserve.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels: the same app.kubernetes.io/* set as the Kustomize base and `pipeserve manifest`.
*/}}
{{- define "pipeserve.labels" -}}
helm.sh/chart: {{ include "pipeserve.chart" . }}
{{ include "pipeserve.selectorLabels" . }}
app.kubernetes.io/part-of: pipeserve
app.kubernetes.io/version: {{ .Values.model.version | toString | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "pipeserve.selectorLabels" -}}
app.kubernetes.io/name: {{ include "pipeserve.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
The predictor's ServiceAccount name ("" for none).
*/}}
{{- define "pipeserve.serviceAccountName" -}}
{{- .Values.serviceAccount.name }}
{{- end }}

{{/*
Resolved autoscaler: hpa in Standard mode, kpa in Knative mode unless set.
*/}}
{{- define "pipeserve.autoscaler" -}}
{{- if .Values.autoscaling.autoscaler }}{{ .Values.autoscaling.autoscaler }}{{ else if eq .Values.deploymentMode "Knative" }}kpa{{ else }}hpa{{ end }}
{{- end }}

{{/*
The metrics each autoscaler accepts (the first is the default); mirrors pipeserve.kube.spec.
*/}}
{{- define "pipeserve.allowedMetrics" -}}
hpa: [cpu, memory]
kpa: [concurrency, rps]
keda: [gpu-utilization, triton-queue-time]
none: []
{{- end }}

{{- define "pipeserve.metric" -}}
{{- $allowed := get (include "pipeserve.allowedMetrics" . | fromYaml) (include "pipeserve.autoscaler" .) }}
{{- if .Values.autoscaling.metric }}{{ .Values.autoscaling.metric }}{{ else if $allowed }}{{ first $allowed }}{{ end }}
{{- end }}

{{- define "pipeserve.scaleTarget" -}}
{{- $defaults := dict "cpu" 80 "memory" 80 "concurrency" 4 "rps" 100 "gpu-utilization" 70 "triton-queue-time" 50 }}
{{- if .Values.autoscaling.target }}{{ int .Values.autoscaling.target }}{{ else }}{{ get $defaults (include "pipeserve.metric" .) }}{{ end }}
{{- end }}

{{/*
GPUs per replica: gpu.count, else 1 for triton-gpu and 0 otherwise.
*/}}
{{- define "pipeserve.gpus" -}}
{{- if kindIs "invalid" .Values.gpu.count }}{{ if eq .Values.target "triton-gpu" }}1{{ else }}0{{ end }}{{ else }}{{ int .Values.gpu.count }}{{ end }}
{{- end }}

{{- define "pipeserve.runtime" -}}
{{- get (dict "triton-gpu" "kserve-tritonserver" "triton-cpu" "kserve-tritonserver" "pipeserve" "pipeserve-runtime" "sklearnserver" "kserve-sklearnserver") .Values.target }}
{{- end }}

{{/*
Per-target resource defaults: the same numbers as pipeserve.kube.spec.
*/}}
{{- define "pipeserve.resourceDefaults" -}}
triton-gpu: {requestsCpu: "1", limitsCpu: "2", requestsMemory: 2Gi, limitsMemory: 4Gi}
triton-cpu: {requestsCpu: "1", limitsCpu: "2", requestsMemory: 1Gi, limitsMemory: 2Gi}
pipeserve: {requestsCpu: 500m, limitsCpu: "1", requestsMemory: 512Mi, limitsMemory: 1Gi}
sklearnserver: {requestsCpu: 500m, limitsCpu: "1", requestsMemory: 512Mi, limitsMemory: 1Gi}
{{- end }}

{{/*
The v2 model name: Triton uses the repository folder (model.name); the other runtimes are started
with --model_name={{.Name}}, the InferenceService name.
*/}}
{{- define "pipeserve.v2ModelName" -}}
{{- if hasPrefix "triton" .Values.target }}{{ .Values.model.name }}{{ else }}{{ include "pipeserve.fullname" . }}{{ end }}
{{- end }}

{{/*
PromQL for the keda metrics; mirrors pipeserve.kube.builder.keda_query.
*/}}
{{- define "pipeserve.kedaQuery" -}}
{{- $sel := printf "namespace=\"%s\",pod=~\"%s-predictor-.*\"" .Release.Namespace (include "pipeserve.fullname" .) }}
{{- if eq (include "pipeserve.metric" .) "gpu-utilization" }}
{{- printf "avg(DCGM_FI_DEV_GPU_UTIL{%s})" $sel }}
{{- else }}
{{- $m := printf "{%s,model=\"%s\"}" $sel .Values.model.name }}
{{- printf "sum(rate(nv_inference_queue_duration_us%s[1m])) / clamp_min(sum(rate(nv_inference_request_success%s[1m])), 1) / 1000" $m $m }}
{{- end }}
{{- end }}

{{/*
Refuse combinations a KServe cluster would reject or silently ignore. The scaling rules are
pipeserve.kube.admission's, word for word with its CHART_WORDS (tests/kube/test_refusals.py checks
every message against it); the target and GPU rules are pipeserve.kube.spec's.
*/}}
{{- define "pipeserve.validateValues" -}}
{{- $mode := .Values.deploymentMode }}
{{- $autoscaler := include "pipeserve.autoscaler" . }}
{{- $metric := include "pipeserve.metric" . }}
{{- $gpus := include "pipeserve.gpus" . | int }}
{{- $min := int .Values.replicas.min }}
{{- $max := int .Values.replicas.max }}
{{- $target := int .Values.autoscaling.target }}
{{- $allowed := get (include "pipeserve.allowedMetrics" . | fromYaml) $autoscaler }}
{{- $owners := dict "cpu" "hpa" "memory" "hpa" "concurrency" "kpa" "rps" "kpa" "gpu-utilization" "keda" "triton-queue-time" "keda" }}
{{- $errors := list }}
{{- if and (eq $autoscaler "kpa") (ne $mode "Knative") }}
{{- $errors = append $errors "The kpa autoscaler (Knative Pod Autoscaler) exists only in Knative mode; set deploymentMode: Knative, or in Standard mode use hpa (cpu/memory) or keda (Prometheus metrics)." }}
{{- end }}
{{- if and (eq $autoscaler "keda") (ne $mode "Standard") }}
{{- $errors = append $errors "The keda autoscaler works only in Standard mode (KServe creates a KEDA ScaledObject for the Deployment); set deploymentMode: Standard, or use kpa in Knative mode." }}
{{- end }}
{{- if and (eq $autoscaler "hpa") (eq $mode "Knative") }}
{{- $errors = append $errors "In Knative mode KServe scales with the Knative Pod Autoscaler: use autoscaler kpa (scale metric concurrency or rps), or Standard mode for an HPA on cpu/memory." }}
{{- end }}
{{- if and .Values.autoscaling.metric (not (has .Values.autoscaling.metric $allowed)) }}
{{- if eq $autoscaler "none" }}
{{- $errors = append $errors (printf "Autoscaler none keeps a fixed replica count and takes no scale metric; got '%s'." .Values.autoscaling.metric) }}
{{- else }}
{{- $where := "" }}
{{- if hasKey $owners .Values.autoscaling.metric }}{{ $where = printf "; '%s' belongs to the %s autoscaler" .Values.autoscaling.metric (get $owners .Values.autoscaling.metric) }}{{ end }}
{{- $errors = append $errors (printf "autoscaling.metric '%s' is not allowed with the %s autoscaler in %s mode%s; allowed: %s." .Values.autoscaling.metric $autoscaler $mode $where (join ", " $allowed)) }}
{{- end }}
{{- end }}
{{- if and (has $metric (list "cpu" "memory" "gpu-utilization")) (gt $target 100) }}
{{- $errors = append $errors (printf "autoscaling.target for %s is a percentage (1..100); got %d." $metric $target) }}
{{- end }}
{{- if lt $max 1 }}
{{- $errors = append $errors (printf "replicas.max must be at least 1; got %d." $max) }}
{{- end }}
{{- if and (ge $max 1) (gt $min $max) }}
{{- $errors = append $errors (printf "replicas.min (%d) is greater than replicas.max (%d); raise replicas.max or lower replicas.min." $min $max) }}
{{- end }}
{{- if and (eq $min 0) (has $autoscaler (list "hpa" "none")) (eq $mode "Standard") }}
{{- $errors = append $errors (printf "replicas.min 0 (scale to zero) is impossible with the %s autoscaler: the HPA clamps it to 1 in Standard mode. Use Knative mode (KPA), or the keda autoscaler, or replicas.min >= 1." $autoscaler) }}
{{- end }}
{{- if and (eq $autoscaler "none") (ne $min $max) }}
{{- $errors = append $errors (printf "Autoscaler none runs a fixed number of replicas, but replicas.min (%d) != replicas.max (%d); set them equal or pick an autoscaler." $min $max) }}
{{- end }}
{{- if and (not (kindIs "invalid" .Values.canaryTrafficPercent)) (ne $mode "Knative") }}
{{- $errors = append $errors "canaryTrafficPercent splits traffic between Knative revisions and is only honoured in Knative mode; set deploymentMode: Knative, or drop canaryTrafficPercent in Standard mode (spec.canary is Standard mode's canary)." }}
{{- end }}
{{- if and (eq .Values.target "sklearnserver") (gt $gpus 0) }}
{{- $errors = append $errors "A GPU with the sklearnserver runtime would sit idle: scikit-learn predicts on the CPU. Serve the ONNX model on a GPU with target triton-gpu (kserve-tritonserver), or drop the GPU." }}
{{- end }}
{{- if and (eq .Values.target "triton-cpu") (gt $gpus 0) }}
{{- $errors = append $errors (printf "Target triton-cpu runs without a GPU but %d GPU(s) were requested; use target triton-gpu." $gpus) }}
{{- end }}
{{- if and (eq .Values.target "triton-gpu") (eq $gpus 0) }}
{{- $errors = append $errors "Target triton-gpu needs at least one GPU; use target triton-cpu to serve ONNX on CPUs." }}
{{- end }}
{{- if and (eq $autoscaler "keda") (eq $metric "gpu-utilization") (eq $gpus 0) }}
{{- $errors = append $errors "The keda gpu-utilization metric (DCGM) needs a GPU target; use triton-queue-time with Triton, or the hpa autoscaler on cpu for CPU targets." }}
{{- end }}
{{- if and (eq $autoscaler "keda") (eq $metric "triton-queue-time") (not (hasPrefix "triton" .Values.target)) }}
{{- $errors = append $errors (printf "The keda triton-queue-time metric comes from Triton; target %s does not export it. Use the hpa autoscaler on cpu instead." .Values.target) }}
{{- end }}
{{- if and .Values.autoscaling.prometheus.authMode (ne $autoscaler "keda") }}
{{- $errors = append $errors "autoscaling.prometheus.authMode only applies to the keda autoscaler; set autoscaling.autoscaler: keda or authMode: \"\"." }}
{{- end }}
{{- if and .Values.autoscaling.prometheus.authMode (not .Values.autoscaling.prometheus.authSecret) }}
{{- $errors = append $errors "autoscaling.prometheus.authMode needs autoscaling.prometheus.authSecret (the Secret with the Prometheus credentials)." }}
{{- end }}
{{- if not (regexMatch "^[a-z]([-a-z0-9]*[a-z0-9])?$" (include "pipeserve.fullname" .)) }}
{{- $errors = append $errors (printf "InferenceService name '%s' is not a DNS-1123 label starting with a letter (lower-case letters, digits and '-', at most 63 characters)." (include "pipeserve.fullname" .)) }}
{{- end }}
{{- if $errors }}
{{- fail (printf "\nVALUES VALIDATION:\n%s" (join "\n" $errors)) }}
{{- end }}
{{- end }}
