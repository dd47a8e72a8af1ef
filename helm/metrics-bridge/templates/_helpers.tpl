{{/* Chart name, overridable. */}}
{{- define "metrics-bridge.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release-qualified name; the release name alone when it already contains the chart name. */}}
{{- define "metrics-bridge.fullname" -}}
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

{{- define "metrics-bridge.selectorLabels" -}}
app.kubernetes.io/name: {{ include "metrics-bridge.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "metrics-bridge.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "metrics-bridge.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "metrics-bridge.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "metrics-bridge.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The chart creates a Secret only when it has something to put in it and no existingSecret is named. */}}
{{- define "metrics-bridge.createSecret" -}}
{{- if and (not .Values.existingSecret) (gt (len (include "metrics-bridge.secretData" . | fromYaml)) 0) }}true{{ end }}
{{- end }}

{{- define "metrics-bridge.secretData" -}}
{{- range $key, $value := .Values.secretEnv }}
{{- if $value }}
{{ $key }}: {{ toString $value | b64enc }}
{{- end }}
{{- end }}
{{- end }}

{{- define "metrics-bridge.secretName" -}}
{{- default (include "metrics-bridge.fullname" .) .Values.existingSecret }}
{{- end }}

{{/*
The bridge config as mounted. Sources and sinks are exactly the user's:
values.yaml has none (Helm deep-merges a user's config into the defaults, so a
default source or sink would run in every install). Only when both are empty
and demo is on does the chart add the demo, simulator -> console; half a
pipeline is refused rather than completed with the demo's half.
The chart owns telemetry.listen (probes and the Service depend on it), so it
is filled in from service.port; a listen on another port is refused rather
than silently replaced. Logs default to JSON.
state_path defaults to the spool volume, so a restarted pod never forwards a
window twice.
With ha.enabled the chart owns config.ha: enabled, lease_prefix (the fullname,
so the Leases are <fullname>-shard-<i>, the names the RBAC Role allows) and the
timings from the values' ha. A config.ha of the user's is refused rather than
merged: a lease_name or lease_prefix of theirs would fall outside the Role.
Every ${VAR} the config references must be provided, or the pod would only
crash-loop at start: refuse to render instead, naming the missing variable.
*/}}
{{- define "metrics-bridge.config" -}}
{{- $config := deepCopy .Values.config }}
{{- if and (not $config.sources) (not $config.sinks) }}
{{- if not .Values.demo }}
{{- fail "config.sources and config.sinks are empty and demo is false: nothing to run. Configure at least one source and one sink (see the chart's ci/*-values.yaml), or set demo=true" }}
{{- end }}
{{- $_ := set $config "sources" (dict "demo" (dict "type" "simulator")) }}
{{- $_ = set $config "sinks" (dict "console" (dict "type" "console")) }}
{{- else if not $config.sources }}
{{- fail "config.sinks is set but config.sources is empty: configure at least one source (the chart adds its demo only when both are empty)" }}
{{- else if not $config.sinks }}
{{- fail "config.sources is set but config.sinks is empty: configure at least one sink (the chart adds its demo only when both are empty)" }}
{{- end }}
{{- $telemetry := $config.telemetry | default (dict) }}
{{- $port := int .Values.service.port }}
{{- if and $telemetry.listen (not (hasSuffix (printf ":%d" $port) (toString $telemetry.listen))) }}
{{- fail (printf "config.telemetry.listen %q must use service.port %d (or leave it out: the chart sets it)" (toString $telemetry.listen) $port) }}
{{- end }}
{{- $_ := set $telemetry "listen" ($telemetry.listen | default (printf "0.0.0.0:%d" $port)) }}
{{- $_ = set $telemetry "log_format" ($telemetry.log_format | default "json") }}
{{- $_ = set $config "telemetry" $telemetry }}
{{- $_ = set $config "state_path" ($config.state_path | default "/var/lib/metrics-bridge/state.json") }}
{{- if hasKey $config "ha" }}
{{- fail "config.ha is rendered by the chart from the values' ha (ha.enabled, ha.leaseDurationSeconds, ha.renewSeconds): remove config.ha and set those instead (the Lease names must match the chart's RBAC Role)" }}
{{- end }}
{{- if include "metrics-bridge.ha" . }}
{{- $ha := .Values.ha }}
{{- if ge (float64 $ha.renewSeconds) (float64 $ha.leaseDurationSeconds) }}
{{- fail (printf "ha.renewSeconds (%v) must be shorter than ha.leaseDurationSeconds (%v)" $ha.renewSeconds $ha.leaseDurationSeconds) }}
{{- end }}
{{- $_ = set $config "ha" (dict "enabled" true "lease_prefix" (include "metrics-bridge.fullname" .) "lease_duration_seconds" (int $ha.leaseDurationSeconds) "renew_seconds" $ha.renewSeconds) }}
{{- end }}
{{- include "metrics-bridge.checkEnv" (dict "root" . "text" (toYaml .Values.config)) }}
{{- toYaml $config }}
{{- end }}

{{- define "metrics-bridge.checkEnv" -}}
{{- $values := .root.Values }}
{{- if not (or $values.existingSecret $values.extraEnvFrom) }}
{{- $provided := dict }}
{{- range $key, $value := $values.secretEnv }}{{ if $value }}{{ $_ := set $provided $key true }}{{ end }}{{ end }}
{{- range $values.extraEnv }}{{ $_ := set $provided .name true }}{{ end }}
{{- range $ref := regexFindAll "\\$?\\$\\{[A-Za-z_][A-Za-z0-9_]*\\}" .text -1 }}
{{- $name := trimSuffix "}" (trimPrefix "${" $ref) }}
{{- if and (not (hasPrefix "$$" $ref)) (not (hasKey $provided $name)) }}
{{- fail (printf "config references ${%s} but nothing provides it: set secretEnv.%s (e.g. --set-string secretEnv.%s=...), name an existingSecret that holds it, or add it to extraEnv" $name $name $name) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/*
A file of the repository's dashboards/ (make dashboards), read through the
chart's files/ symlinks: one copy in git, and `helm package` stores the
linked files' contents in the archive. A checkout that lost the symlinks
(git on Windows without core.symlinks) leaves a file holding the link's
path: refuse to render rather than ship it.
*/}}
{{- define "metrics-bridge.dashboardFile" -}}
{{- $text := .root.Files.Get (printf "files/%s" .name) }}
{{- if not (contains .expect $text) }}
{{- fail (printf "files/%s does not hold dashboards/%s (it is a symlink to it): check the repository out with symlinks (git config core.symlinks true), or install the packaged chart" .name .name) }}
{{- end }}
{{- $text }}
{{- end }}

{{/*
What the bridge's container and the `helm test` pod (templates/tests/check.yaml)
share, so the check sees exactly what the bridge sees: the image, the config
file's path, the Secret's keys and extra env, the locked-down security
contexts, the mounts and the volumes.
*/}}
{{- define "metrics-bridge.image" -}}
image: "{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}"
imagePullPolicy: {{ .Values.image.pullPolicy }}
{{- end }}

{{- define "metrics-bridge.configDir" -}}
/etc/metrics-bridge
{{- end }}

{{- define "metrics-bridge.configPath" -}}
{{ include "metrics-bridge.configDir" . }}/config.yaml
{{- end }}

{{/*
envFrom (the Secret, extraEnvFrom) and env (a sharded pod's shard, the namespace of an ha pod's
Lease, extraEnv); empty when there is neither. Called with (dict "root" $ "sharded" bool "ha" bool):
`ha` for the bridge's pods and the check pod of an ha release (the bridge's config names no
namespace, so loading it needs POD_NAMESPACE; the holder identity is POD_NAME, else HOSTNAME).
*/}}
{{- define "metrics-bridge.env" -}}
{{- $values := .root.Values }}
{{- if or (include "metrics-bridge.createSecret" .root) $values.existingSecret $values.extraEnvFrom }}
envFrom:
  {{- if or (include "metrics-bridge.createSecret" .root) $values.existingSecret }}
  - secretRef:
      name: {{ include "metrics-bridge.secretName" .root }}
  {{- end }}
  {{- with $values.extraEnvFrom }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end }}
{{- if or .sharded .ha $values.extraEnv }}
env:
  {{- if .sharded }}
  # the shard: SHARD_COUNT, and the ordinal that ends the pod's name (<fullname>-<ordinal>)
  - name: SHARD_COUNT
    value: {{ include "metrics-bridge.shards" .root | quote }}
  - name: POD_NAME
    valueFrom:
      fieldRef:
        fieldPath: metadata.name
  {{- end }}
  {{- if .ha }}
  # warm standby: the shard is the ordinal modulo SHARD_COUNT (pods i and i+N share it and its
  # Lease); the Lease's namespace (the holder identity is POD_NAME)
  - name: POD_NAMESPACE
    valueFrom:
      fieldRef:
        fieldPath: metadata.namespace
  {{- end }}
  {{- with $values.extraEnv }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end }}
{{- end }}

{{- define "metrics-bridge.podSecurityContext" -}}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- end }}

{{- define "metrics-bridge.securityContext" -}}
securityContext:
  {{- toYaml .Values.securityContext | nindent 2 }}
{{- end }}

{{- define "metrics-bridge.volumeMounts" -}}
volumeMounts:
  - name: config
    mountPath: {{ include "metrics-bridge.configDir" . }}
    readOnly: true
  - name: spool
    mountPath: /var/lib/metrics-bridge
  - name: tmp
    mountPath: /tmp
{{- end }}

{{/*
The pod's volumes; called with (dict "root" $ "scratchSpool" bool "claimedSpool" bool). The test
pod passes scratchSpool: `check` opens no spool and no state file, and a
ReadWriteOnce claim held by the bridge's pod cannot be attached on another
node, so it gets an emptyDir in the claim's place (same path, same owner).
A sharded pod passes claimedSpool: its spool is its StatefulSet claim, not a volume.
*/}}
{{- define "metrics-bridge.volumes" -}}
{{- $root := .root }}
{{- $persistence := $root.Values.spool.persistence }}
volumes:
  - name: config
    configMap:
      name: {{ include "metrics-bridge.fullname" $root }}
  {{- if not .claimedSpool }}
  - name: spool
    {{- if and $persistence.enabled (not .scratchSpool) }}
    persistentVolumeClaim:
      claimName: {{ $persistence.existingClaim | default (printf "%s-spool" (include "metrics-bridge.fullname" $root)) }}
    {{- else }}
    emptyDir:
      sizeLimit: {{ $root.Values.spool.emptyDir.sizeLimit }}
    {{- end }}
  {{- end }}
  - name: tmp
    emptyDir:
      medium: Memory
      sizeLimit: {{ $root.Values.tmpSizeLimit }}
{{- end }}

{{/*
Where the pod may run: the nodes, tolerations and affinity the bridge has (its egress, too).
Called with (dict "root" $ "ha" bool): an ha pod without a user-set affinity gets the
anti-affinity of ha.antiAffinity (the check pod passes ha false: it keeps the user's only).
*/}}
{{- define "metrics-bridge.scheduling" -}}
{{- $values := .root.Values }}
{{- with $values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- $affinity := $values.affinity }}
{{- if and .ha (not $affinity) }}
{{- $affinity = include "metrics-bridge.antiAffinity" .root | fromYaml }}
{{- end }}
{{- with $affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/*
ha.antiAffinity against the release's pods across nodes (kubernetes.io/hostname): soft
(preferred, weight 100), hard (required: one release pod per node, so 2 x shards schedulable
nodes), none (empty).
*/}}
{{- define "metrics-bridge.antiAffinity" -}}
{{- $mode := .Values.ha.antiAffinity | default "soft" }}
{{- $term := dict "labelSelector" (dict "matchLabels" (include "metrics-bridge.selectorLabels" . | fromYaml)) "topologyKey" "kubernetes.io/hostname" }}
{{- if eq $mode "soft" }}
podAntiAffinity:
  preferredDuringSchedulingIgnoredDuringExecution:
    {{- list (dict "weight" 100 "podAffinityTerm" $term) | toYaml | nindent 4 }}
{{- else if eq $mode "hard" }}
podAntiAffinity:
  requiredDuringSchedulingIgnoredDuringExecution:
    {{- list $term | toYaml | nindent 4 }}
{{- end }}
{{- end }}

{{- define "metrics-bridge.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* How many replicas split the sources: 1 (the default) runs one Deployment, more a StatefulSet. */}}
{{- define "metrics-bridge.shards" -}}
{{- int ((.Values.sharding | default dict).replicas | default 1) }}
{{- end }}

{{/* "true" when ha.enabled (a warm standby per shard), else empty. */}}
{{- define "metrics-bridge.ha" -}}
{{- if (.Values.ha | default dict).enabled }}true{{ end }}
{{- end }}

{{/* "true" when the bridge runs in a StatefulSet (sharded, or ha.enabled) rather than the Deployment, else empty. */}}
{{- define "metrics-bridge.stateful" -}}
{{- if or (include "metrics-bridge.ha" .) (ne (include "metrics-bridge.shards" .) "1") }}true{{ end }}
{{- end }}

{{/*
The StatefulSet's pods: one per shard, or with ha.enabled two per shard (2 x N: pods i and
i+N share shard i, the bridge's ordinal modulo SHARD_COUNT, and its Lease).
*/}}
{{- define "metrics-bridge.pods" -}}
{{- mul (int (include "metrics-bridge.shards" .)) (ternary 2 1 (not (empty (include "metrics-bridge.ha" .)))) }}
{{- end }}

{{/* The Leases of an ha release, <fullname>-shard-0..N-1: the bridge's lease_prefix is the fullname. */}}
{{- define "metrics-bridge.leaseNames" -}}
{{- $fullname := include "metrics-bridge.fullname" . }}
{{- range $i := until (int (include "metrics-bridge.shards" .)) }}
- {{ printf "%s-shard-%d" $fullname $i }}
{{- end }}
{{- end }}

{{/*
The bridge's pod template, shared by the Deployment and the sharded StatefulSet;
called with (dict "root" $ "sharded" bool). A sharded pod runs only its share of
the sources: SHARD_COUNT and its own name (the StatefulSet ordinal) say which,
and its spool is its own claim from the StatefulSet's volumeClaimTemplates.
With ha.enabled (always a StatefulSet) the pod also gets POD_NAMESPACE, the
service account token (the Lease calls need it) and the default anti-affinity.
*/}}
{{- define "metrics-bridge.podTemplate" -}}
{{- $root := .root -}}
{{- $ha := not (empty (include "metrics-bridge.ha" $root)) -}}
metadata:
  annotations:
    # roll the pod when the config or the chart-managed secret changes
    checksum/config: {{ include "metrics-bridge.config" $root | sha256sum }}
    {{- if include "metrics-bridge.createSecret" $root }}
    checksum/secret: {{ include "metrics-bridge.secretData" $root | sha256sum }}
    {{- end }}
    {{- with $root.Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  labels:
    {{- include "metrics-bridge.labels" $root | nindent 4 }}
    {{- with $root.Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "metrics-bridge.serviceAccountName" $root }}
  {{- if $ha }}
  # the Lease calls authenticate with the service account's token (the Role of rbac.yaml)
  automountServiceAccountToken: true
  {{- else }}
  automountServiceAccountToken: false
  {{- end }}
  {{- with include "metrics-bridge.imagePullSecrets" $root | trim }}
  {{- . | nindent 2 }}
  {{- end }}
  {{- with $root.Values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  # SIGTERM: stop scraping, flush queues, spool the rest; give that time
  terminationGracePeriodSeconds: {{ $root.Values.terminationGracePeriodSeconds }}
  {{- include "metrics-bridge.podSecurityContext" $root | nindent 2 }}
  containers:
    - name: metrics-bridge
      {{- include "metrics-bridge.image" $root | nindent 6 }}
      # flush for up to 10 s less than Kubernetes waits before SIGKILL
      args: ["run", "-c", {{ include "metrics-bridge.configPath" $root | quote }}, "--grace", "{{ sub (int $root.Values.terminationGracePeriodSeconds) 10 }}"]
      ports:
        - name: metrics
          containerPort: {{ $root.Values.service.port }}
          protocol: TCP
      {{- with include "metrics-bridge.env" (dict "root" $root "sharded" .sharded "ha" $ha) | trim }}
      {{- . | nindent 6 }}
      {{- end }}
      livenessProbe:
        httpGet:
          path: /healthz
          port: metrics
        {{- toYaml $root.Values.livenessProbe | nindent 8 }}
      readinessProbe:
        httpGet:
          path: /readyz
          port: metrics
        {{- toYaml $root.Values.readinessProbe | nindent 8 }}
      resources:
        {{- toYaml $root.Values.resources | nindent 8 }}
      {{- include "metrics-bridge.securityContext" $root | nindent 6 }}
      {{- include "metrics-bridge.volumeMounts" $root | nindent 6 }}
  {{- include "metrics-bridge.volumes" (dict "root" $root "scratchSpool" false "claimedSpool" .sharded) | trim | nindent 2 }}
  {{- with include "metrics-bridge.scheduling" (dict "root" $root "ha" $ha) | trim }}
  {{- . | nindent 2 }}
  {{- end }}
{{- end }}
