{{/* Chart name. */}}
{{- define "kpo-reaper.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name: the release name if it contains the chart name, else <release>-<chart>. */}}
{{- define "kpo-reaper.fullname" -}}
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

{{- define "kpo-reaper.namespace" -}}
{{- default .Release.Namespace .Values.namespaceOverride -}}
{{- end -}}

{{- define "kpo-reaper.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "kpo-reaper.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kpo-reaper.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "kpo-reaper.labels" -}}
helm.sh/chart: {{ include "kpo-reaper.chart" . }}
{{ include "kpo-reaper.selectorLabels" . }}
app.kubernetes.io/version: {{ include "kpo-reaper.imageTag" . | trunc 63 | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: reaper
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "kpo-reaper.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "kpo-reaper.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "kpo-reaper.imageTag" -}}
{{- default .Chart.AppVersion .Values.image.tag -}}
{{- end -}}

{{- define "kpo-reaper.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (include "kpo-reaper.imageTag" .) -}}
{{- end -}}
{{- end -}}

{{/* The namespaces the reaper watches, as a JSON list (empty when allNamespaces). */}}
{{- define "kpo-reaper.watchedNamespaces" -}}
{{- if .Values.kubernetes.allNamespaces -}}
[]
{{- else if .Values.kubernetes.namespaces -}}
{{- .Values.kubernetes.namespaces | uniq | toJson -}}
{{- else -}}
{{- list (include "kpo-reaper.namespace" .) | toJson -}}
{{- end -}}
{{- end -}}

{{- define "kpo-reaper.leaseName" -}}
{{- default (include "kpo-reaper.fullname" .) .Values.leaderElection.leaseName -}}
{{- end -}}

{{- define "kpo-reaper.leaseNamespace" -}}
{{- default (include "kpo-reaper.namespace" .) .Values.leaderElection.leaseNamespace -}}
{{- end -}}

{{- define "kpo-reaper.secretName" -}}
{{- if .Values.airflow.auth.createSecret -}}
{{- printf "%s-airflow" (include "kpo-reaper.fullname" .) -}}
{{- else -}}
{{- .Values.airflow.auth.existingSecret -}}
{{- end -}}
{{- end -}}

{{- define "kpo-reaper.tokenMountDir" -}}/var/run/secrets/kpo-reaper/airflow{{- end -}}

{{/* "true" when the bearer token is mounted from the Secret as a file. */}}
{{- define "kpo-reaper.tokenMounted" -}}
{{- $a := .Values.airflow.auth -}}
{{- if and (eq $a.type "bearer") (not $a.tokenFile) $a.mountToken (include "kpo-reaper.secretName" .) -}}true{{- end -}}
{{- end -}}

{{/* A Go duration ("1m", "1h30m", "90s") in whole seconds, rounded up. */}}
{{- define "kpo-reaper.durationSeconds" -}}
{{- $total := 0.0 -}}
{{- $units := dict "h" 3600.0 "m" 60.0 "s" 1.0 "ms" 0.001 "us" 0.000001 "µs" 0.000001 "ns" 0.000000001 -}}
{{- range $part := regexFindAll "[0-9]+(\\.[0-9]+)?(ns|us|µs|ms|s|m|h)" (toString .) -1 -}}
{{- $num := regexFind "^[0-9]+(\\.[0-9]+)?" $part -}}
{{- $unit := trimPrefix $num $part -}}
{{- $total = addf $total (mulf (float64 $num) (get $units $unit)) -}}
{{- end -}}
{{- $total | ceil | int -}}
{{- end -}}

{{/*
Checks that stop rendering with a message saying what to change. Included by every workload
template, so `helm template` and `helm install` fail before anything is applied.
*/}}
{{- define "kpo-reaper.validate" -}}
{{- $v := .Values -}}
{{- $a := $v.airflow.auth -}}
{{- if not $v.airflow.url -}}
{{- fail "airflow.url is required: the base URL of the Airflow 2.x webserver or Airflow 3.x API server, without /api/v1 (e.g. --set airflow.url=http://airflow-webserver.airflow:8080)" -}}
{{- end -}}
{{- if and (eq $v.mode "cronjob") $v.leaderElection.enabled -}}
{{- fail "leaderElection.enabled is not allowed with mode=cronjob: kpo-reaper refuses leader election together with --once, and the CronJob's concurrencyPolicy already keeps one cycle at a time" -}}
{{- end -}}
{{- if and (eq $v.mode "deployment") (gt (int $v.replicaCount) 1) (not $v.leaderElection.enabled) -}}
{{- fail (printf "replicaCount is %d but leaderElection.enabled is false: without leader election every replica would reap the same pods and count confirmations twice. Set leaderElection.enabled=true (recommended for HA) or replicaCount=1" (int $v.replicaCount)) -}}
{{- end -}}
{{- if and (eq $v.mode "deployment") (eq (default "" $v.strategy.type) "RollingUpdate") (not $v.leaderElection.enabled) -}}
{{- fail "strategy.type RollingUpdate needs leaderElection.enabled=true: during a rollout the old and new pod would both reap. Leave strategy empty (Recreate) or enable leader election" -}}
{{- end -}}
{{- if and (or $a.password $a.token) (not $a.createSecret) -}}
{{- fail "airflow.auth.password/token are only used with airflow.auth.createSecret=true (not recommended). Put the credential in a Secret and set airflow.auth.existingSecret instead" -}}
{{- end -}}
{{- if and $a.createSecret $a.existingSecret -}}
{{- fail "set either airflow.auth.existingSecret (recommended) or airflow.auth.createSecret, not both" -}}
{{- end -}}
{{- if or (eq $a.type "basic") (eq $a.type "airflow-jwt") -}}
{{- if and (not $a.username) (not (and $a.existingSecret $a.usernameKey)) -}}
{{- fail (printf "airflow.auth.type=%s needs airflow.auth.username (or airflow.auth.usernameKey in airflow.auth.existingSecret)" $a.type) -}}
{{- end -}}
{{- if not (or $a.existingSecret $a.createSecret) -}}
{{- fail (printf "airflow.auth.type=%s needs airflow.auth.existingSecret: the name of a Secret holding the password under key airflow.auth.passwordKey (%s). Create it first: kubectl create secret generic kpo-reaper-airflow --from-literal=%s=..." $a.type $a.passwordKey $a.passwordKey) -}}
{{- end -}}
{{- if and $a.createSecret (not $a.password) -}}
{{- fail "airflow.auth.createSecret is true but airflow.auth.password is empty" -}}
{{- end -}}
{{- end -}}
{{- if eq $a.type "bearer" -}}
{{- if not (or $a.existingSecret $a.createSecret $a.tokenFile) -}}
{{- fail (printf "airflow.auth.type=bearer needs airflow.auth.existingSecret (a Secret holding the token under key airflow.auth.tokenKey, %s) or airflow.auth.tokenFile (a file another container keeps fresh)" $a.tokenKey) -}}
{{- end -}}
{{- if and $a.createSecret (not $a.token) (not $a.tokenFile) -}}
{{- fail "airflow.auth.createSecret is true but airflow.auth.token is empty" -}}
{{- end -}}
{{- end -}}
{{- if and $v.serviceMonitor.enabled (ne $v.mode "deployment") -}}
{{- fail "serviceMonitor.enabled needs mode=deployment: the CronJob serves no metrics (its PrometheusRule uses kube-state-metrics instead)" -}}
{{- end -}}
{{- if and $v.serviceMonitor.enabled (not $v.service.enabled) -}}
{{- fail "serviceMonitor.enabled needs service.enabled=true: the ServiceMonitor selects the metrics Service" -}}
{{- end -}}
{{- end -}}

{{/* The configuration file, as YAML. Never contains a credential. */}}
{{- define "kpo-reaper.config" -}}
{{- $v := .Values -}}
{{- $a := $v.airflow.auth -}}
{{- $auth := dict "type" $a.type -}}
{{- if and $a.username (or (eq $a.type "basic") (eq $a.type "airflow-jwt")) -}}
{{- $_ := set $auth "username" $a.username -}}
{{- end -}}
{{- if eq $a.type "bearer" -}}
{{- if $a.tokenFile -}}
{{- $_ := set $auth "tokenFile" $a.tokenFile -}}
{{- else if include "kpo-reaper.tokenMounted" . -}}
{{- $_ := set $auth "tokenFile" (printf "%s/token" (include "kpo-reaper.tokenMountDir" .)) -}}
{{- end -}}
{{- end -}}
{{- $airflow := dict "url" $v.airflow.url "apiVersion" $v.airflow.apiVersion "timeout" $v.airflow.timeout "maxRetries" $v.airflow.maxRetries "auth" $auth -}}
{{- $kube := dict -}}
{{- if $v.kubernetes.allNamespaces -}}
{{- $_ := set $kube "allNamespaces" true -}}
{{- else -}}
{{- $_ := set $kube "namespaces" (include "kpo-reaper.watchedNamespaces" . | fromJsonArray) -}}
{{- end -}}
{{- with $v.kubernetes.labelSelector -}}
{{- $_ := set $kube "labelSelector" . -}}
{{- end -}}
{{- $reaper := dict "dryRun" $v.dryRun "interval" $v.reaper.interval "minPodAge" $v.reaper.minPodAge "terminalGracePeriod" $v.reaper.terminalGracePeriod "orphanMinAge" $v.reaper.orphanMinAge "confirmations" $v.reaper.confirmations "maxDeletesPerCycle" $v.reaper.maxDeletesPerCycle -}}
{{- $server := dict "address" "" -}}
{{- if eq $v.mode "deployment" -}}
{{- $_ := set $server "address" (printf ":%d" (int $v.server.port)) -}}
{{- end -}}
{{- $le := dict "enabled" false -}}
{{- if $v.leaderElection.enabled -}}
{{- $le = dict "enabled" true "leaseName" (include "kpo-reaper.leaseName" .) "leaseNamespace" (include "kpo-reaper.leaseNamespace" .) "leaseDuration" $v.leaderElection.leaseDuration "renewDeadline" $v.leaderElection.renewDeadline "retryPeriod" $v.leaderElection.retryPeriod -}}
{{- end -}}
{{- $cfg := dict "airflow" $airflow "kubernetes" $kube "reaper" $reaper "log" (dict "level" $v.log.level "format" $v.log.format) "server" $server "leaderElection" $le -}}
{{- $cfg = mustMergeOverwrite $cfg (deepCopy $v.extraConfig) -}}
{{- toYaml $cfg -}}
{{- end -}}

{{/* The pod template's spec, shared by the Deployment and the CronJob. */}}
{{- define "kpo-reaper.podSpec" -}}
{{- $v := .Values -}}
{{- $a := $v.airflow.auth -}}
{{- $secret := include "kpo-reaper.secretName" . -}}
serviceAccountName: {{ include "kpo-reaper.serviceAccountName" . }}
automountServiceAccountToken: {{ $v.serviceAccount.automountServiceAccountToken }}
{{- with $v.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
terminationGracePeriodSeconds: {{ $v.terminationGracePeriodSeconds }}
{{- if eq $v.mode "cronjob" }}
restartPolicy: Never
{{- end }}
securityContext:
  {{- toYaml $v.podSecurityContext | nindent 2 }}
containers:
  - name: kpo-reaper
    image: {{ include "kpo-reaper.image" . }}
    imagePullPolicy: {{ $v.image.pullPolicy }}
    args:
      - run
      - --config=/etc/kpo-reaper/kpo-reaper.yaml
      {{- if eq $v.mode "cronjob" }}
      - --once
      {{- end }}
      {{- range $v.extraArgs }}
      - {{ . | quote }}
      {{- end }}
    env:
      - name: POD_NAME
        valueFrom:
          fieldRef:
            fieldPath: metadata.name
      - name: POD_NAMESPACE
        valueFrom:
          fieldRef:
            fieldPath: metadata.namespace
      {{- if and $secret $a.usernameKey (or (eq $a.type "basic") (eq $a.type "airflow-jwt")) }}
      - name: KPO_REAPER_AIRFLOW_AUTH_USERNAME
        valueFrom:
          secretKeyRef:
            name: {{ $secret }}
            key: {{ $a.usernameKey }}
      {{- end }}
      {{- if and $secret (or (eq $a.type "basic") (eq $a.type "airflow-jwt")) }}
      - name: KPO_REAPER_AIRFLOW_AUTH_PASSWORD
        valueFrom:
          secretKeyRef:
            name: {{ $secret }}
            key: {{ $a.passwordKey }}
      {{- end }}
      {{- if and $secret (eq $a.type "bearer") (not $a.tokenFile) (not $a.mountToken) }}
      - name: KPO_REAPER_AIRFLOW_AUTH_TOKEN
        valueFrom:
          secretKeyRef:
            name: {{ $secret }}
            key: {{ $a.tokenKey }}
      {{- end }}
      {{- with $v.extraEnv }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
    {{- with $v.extraEnvFrom }}
    envFrom:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    {{- if eq $v.mode "deployment" }}
    ports:
      - name: http-metrics
        containerPort: {{ $v.server.port }}
        protocol: TCP
    {{- with $v.livenessProbe }}
    livenessProbe:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    {{- with $v.readinessProbe }}
    readinessProbe:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    {{- end }}
    securityContext:
      {{- toYaml $v.securityContext | nindent 6 }}
    {{- with $v.resources }}
    resources:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    volumeMounts:
      - name: config
        mountPath: /etc/kpo-reaper
        readOnly: true
      {{- if include "kpo-reaper.tokenMounted" . }}
      - name: airflow-token
        mountPath: {{ include "kpo-reaper.tokenMountDir" . }}
        readOnly: true
      {{- end }}
      {{- with $v.extraVolumeMounts }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
  {{- with $v.extraContainers }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
volumes:
  - name: config
    configMap:
      name: {{ include "kpo-reaper.fullname" . }}
  {{- if include "kpo-reaper.tokenMounted" . }}
  - name: airflow-token
    secret:
      secretName: {{ $secret }}
      items:
        - key: {{ $a.tokenKey }}
          path: token
  {{- end }}
  {{- with $v.extraVolumes }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- with $v.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Pod template metadata (labels, annotations with the config checksum). */}}
{{- define "kpo-reaper.podMetadata" -}}
labels:
  {{- include "kpo-reaper.selectorLabels" . | nindent 2 }}
  app.kubernetes.io/component: reaper
  {{- with .Values.podLabels }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
annotations:
  checksum/config: {{ include "kpo-reaper.config" . | sha256sum }}
  {{- if .Values.airflow.auth.createSecret }}
  checksum/secret: {{ include (print $.Template.BasePath "/secret.yaml") . | sha256sum }}
  {{- end }}
  {{- with .Values.podAnnotations }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end -}}
