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
{{- define "kpo-reaper.googleMountDir" -}}/var/run/secrets/kpo-reaper/google{{- end -}}
{{- define "kpo-reaper.caMountDir" -}}/var/run/secrets/kpo-reaper/airflow-ca{{- end -}}
{{- define "kpo-reaper.clientCertMountDir" -}}/var/run/secrets/kpo-reaper/airflow-client-tls{{- end -}}

{{/* "true" when airflow-jwt logs in with the client_credentials grant (clientID + client secret). */}}
{{- define "kpo-reaper.clientCredentials" -}}
{{- $a := .Values.airflow.auth -}}
{{- if and (eq $a.type "airflow-jwt") (or $a.clientID $a.clientIDKey) -}}true{{- end -}}
{{- end -}}

{{/* "true" when basic or airflow-jwt logs in with a username and password. */}}
{{- define "kpo-reaper.passwordLogin" -}}
{{- $a := .Values.airflow.auth -}}
{{- if and (or (eq $a.type "basic") (eq $a.type "airflow-jwt")) (not (include "kpo-reaper.clientCredentials" .)) -}}true{{- end -}}
{{- end -}}

{{/* "true" when a Google credentials JSON is mounted from existingSecret (auth.type google). */}}
{{- define "kpo-reaper.googleCredentialsMounted" -}}
{{- $a := .Values.airflow.auth -}}
{{- if and (eq $a.type "google") $a.existingSecret -}}true{{- end -}}
{{- end -}}

{{/* "true" when the bearer token is mounted from the Secret as a file. */}}
{{- define "kpo-reaper.tokenMounted" -}}
{{- $a := .Values.airflow.auth -}}
{{- if and (eq $a.type "bearer") (not $a.tokenFile) $a.mountToken (include "kpo-reaper.secretName" .) -}}true{{- end -}}
{{- end -}}

{{/* "true" when the Deployment gets a PodDisruptionBudget: enabled, or unset and more than one replica. */}}
{{- define "kpo-reaper.pdbEnabled" -}}
{{- $p := .Values.podDisruptionBudget -}}
{{- if eq .Values.mode "deployment" -}}
{{- if kindIs "invalid" $p.enabled -}}
{{- if gt (int .Values.replicaCount) 1 -}}true{{- end -}}
{{- else if $p.enabled -}}true{{- end -}}
{{- end -}}
{{- end -}}

{{/* Airflow's TCP port for the NetworkPolicy: networkPolicy.airflowPort, else airflow.url's, else its scheme's. */}}
{{- define "kpo-reaper.airflowPort" -}}
{{- $v := .Values -}}
{{- if $v.networkPolicy.airflowPort -}}
{{- int $v.networkPolicy.airflowPort -}}
{{- else if eq $v.airflow.auth.type "mwaa" -}}
443
{{- else -}}
{{- $u := urlParse $v.airflow.url -}}
{{- /* an IPv6 literal's colons are not the port's */ -}}
{{- $hostPort := splitList ":" (regexReplaceAll "^\\[[^\\]]*\\]" $u.host "h") -}}
{{- if gt (len $hostPort) 1 -}}
{{- last $hostPort -}}
{{- else if eq $u.scheme "https" -}}
443
{{- else -}}
80
{{- end -}}
{{- end -}}
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
{{- $tls := $v.airflow.tls -}}
{{- if eq $a.type "mwaa" -}}
{{- if $v.airflow.url -}}
{{- fail "airflow.url must be empty with airflow.auth.type=mwaa: MWAA is reached through the AWS API, named by airflow.mwaa.environment and airflow.mwaa.region" -}}
{{- end -}}
{{- if not (and $v.airflow.mwaa.environment $v.airflow.mwaa.region) -}}
{{- fail "airflow.auth.type=mwaa needs airflow.mwaa.environment and airflow.mwaa.region" -}}
{{- end -}}
{{- if or $a.existingSecret $a.createSecret $a.username $a.usernameKey $a.tokenFile $a.clientID $a.clientIDKey -}}
{{- fail "airflow.auth.type=mwaa takes no credentials from the chart (existingSecret, createSecret, username, tokenFile, clientID): AWS credentials come from IRSA (serviceAccount.annotations eks.amazonaws.com/role-arn) or EKS Pod Identity" -}}
{{- end -}}
{{- if or $tls.caConfigMap $tls.caSecret $tls.clientCertSecret $tls.insecureSkipVerify -}}
{{- fail "airflow.tls does not apply to airflow.auth.type=mwaa: the AWS SDK makes the connection" -}}
{{- end -}}
{{- else -}}
{{- if not $v.airflow.url -}}
{{- fail "airflow.url is required: the base URL of the Airflow 2.x webserver or Airflow 3.x API server, without /api/v1 or /api/v2 (e.g. --set airflow.url=http://airflow-webserver.airflow:8080); only airflow.auth.type=mwaa goes without" -}}
{{- end -}}
{{- with $v.airflow.mwaa -}}
{{- if or .environment .region .endpoint -}}
{{- fail "airflow.mwaa is only used with airflow.auth.type=mwaa" -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if and (or $a.clientID $a.clientIDKey) (ne $a.type "airflow-jwt") -}}
{{- fail (printf "airflow.auth.clientID/clientIDKey are only used with airflow.auth.type=airflow-jwt (type is %s)" $a.type) -}}
{{- end -}}
{{- if and $a.scopes (ne $a.type "google") -}}
{{- fail (printf "airflow.auth.scopes are only used with airflow.auth.type=google (type is %s)" $a.type) -}}
{{- end -}}
{{- if include "kpo-reaper.clientCredentials" . -}}
{{- if or $a.username $a.usernameKey -}}
{{- fail "airflow.auth.type=airflow-jwt takes either username and password or clientID and a client secret, not both: remove airflow.auth.username/usernameKey, or clientID/clientIDKey" -}}
{{- end -}}
{{- if or $a.createSecret (not $a.existingSecret) -}}
{{- fail (printf "airflow-jwt with client credentials reads the client secret from airflow.auth.existingSecret (key airflow.auth.clientSecretKey, %s); createSecret is not supported. Create it first: kubectl create secret generic kpo-reaper-airflow --from-literal=%s=..." $a.clientSecretKey $a.clientSecretKey) -}}
{{- end -}}
{{- end -}}
{{- if and (eq $a.type "google") (or $a.createSecret $a.username $a.usernameKey $a.tokenFile) -}}
{{- fail "airflow.auth.type=google uses Application Default Credentials (GKE Workload Identity through serviceAccount.annotations iam.gke.io/gcp-service-account) or a credentials JSON in airflow.auth.existingSecret (key airflow.auth.credentialsKey); remove createSecret, username, usernameKey and tokenFile" -}}
{{- end -}}
{{- if and $tls.caConfigMap $tls.caSecret -}}
{{- fail "set either airflow.tls.caConfigMap or airflow.tls.caSecret, not both" -}}
{{- end -}}
{{- if and $tls.insecureSkipVerify (or $tls.caConfigMap $tls.caSecret) -}}
{{- fail "set either a CA (airflow.tls.caConfigMap / caSecret) or airflow.tls.insecureSkipVerify, not both" -}}
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
{{- if include "kpo-reaper.passwordLogin" . -}}
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
{{- if and $a.username (include "kpo-reaper.passwordLogin" .) -}}
{{- $_ := set $auth "username" $a.username -}}
{{- end -}}
{{- if and (include "kpo-reaper.clientCredentials" .) $a.clientID (not $a.clientIDKey) -}}
{{- $_ := set $auth "clientID" $a.clientID -}}
{{- end -}}
{{- if eq $a.type "google" -}}
{{- if include "kpo-reaper.googleCredentialsMounted" . -}}
{{- $_ := set $auth "credentialsFile" (printf "%s/credentials.json" (include "kpo-reaper.googleMountDir" .)) -}}
{{- end -}}
{{- with $a.scopes -}}
{{- $_ := set $auth "scopes" . -}}
{{- end -}}
{{- end -}}
{{- if eq $a.type "bearer" -}}
{{- if $a.tokenFile -}}
{{- $_ := set $auth "tokenFile" $a.tokenFile -}}
{{- else if include "kpo-reaper.tokenMounted" . -}}
{{- $_ := set $auth "tokenFile" (printf "%s/token" (include "kpo-reaper.tokenMountDir" .)) -}}
{{- end -}}
{{- end -}}
{{- $airflow := dict "apiVersion" $v.airflow.apiVersion "timeout" $v.airflow.timeout "maxRetries" $v.airflow.maxRetries "auth" $auth -}}
{{- if eq $a.type "mwaa" -}}
{{- $mwaa := dict "environment" $v.airflow.mwaa.environment "region" $v.airflow.mwaa.region -}}
{{- with $v.airflow.mwaa.endpoint -}}
{{- $_ := set $mwaa "endpoint" . -}}
{{- end -}}
{{- $_ := set $airflow "mwaa" $mwaa -}}
{{- else -}}
{{- $_ := set $airflow "url" $v.airflow.url -}}
{{- end -}}
{{- with $v.airflow.pageSize -}}
{{- $_ := set $airflow "pageSize" (int .) -}}
{{- end -}}
{{- $t := $v.airflow.tls -}}
{{- $tls := dict -}}
{{- if or $t.caConfigMap $t.caSecret -}}
{{- $_ := set $tls "caFile" (printf "%s/ca.crt" (include "kpo-reaper.caMountDir" .)) -}}
{{- end -}}
{{- if $t.clientCertSecret -}}
{{- $_ := set $tls "certFile" (printf "%s/tls.crt" (include "kpo-reaper.clientCertMountDir" .)) -}}
{{- $_ := set $tls "keyFile" (printf "%s/tls.key" (include "kpo-reaper.clientCertMountDir" .)) -}}
{{- end -}}
{{- if $t.insecureSkipVerify -}}
{{- $_ := set $tls "insecureSkipVerify" true -}}
{{- end -}}
{{- if $tls -}}
{{- $_ := set $airflow "tls" $tls -}}
{{- end -}}
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
{{- if $v.reaper.reapOrphans -}}
{{- $_ := set $reaper "reapOrphans" true -}}
{{- end -}}
{{- with $v.reaper.confirmationSpacing -}}
{{- $_ := set $reaper "confirmationSpacing" . -}}
{{- end -}}
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
      # The Warning Events about a failed cycle name this pod by uid too, so
      # `kubectl describe pod` shows them.
      - name: POD_UID
        valueFrom:
          fieldRef:
            fieldPath: metadata.uid
      {{- if and $secret $a.usernameKey (include "kpo-reaper.passwordLogin" .) }}
      - name: KPO_REAPER_AIRFLOW_AUTH_USERNAME
        valueFrom:
          secretKeyRef:
            name: {{ $secret }}
            key: {{ $a.usernameKey }}
      {{- end }}
      {{- if and $secret (include "kpo-reaper.passwordLogin" .) }}
      - name: KPO_REAPER_AIRFLOW_AUTH_PASSWORD
        valueFrom:
          secretKeyRef:
            name: {{ $secret }}
            key: {{ $a.passwordKey }}
      {{- end }}
      {{- if and $secret (include "kpo-reaper.clientCredentials" .) }}
      {{- if $a.clientIDKey }}
      - name: KPO_REAPER_AIRFLOW_AUTH_CLIENTID
        valueFrom:
          secretKeyRef:
            name: {{ $secret }}
            key: {{ $a.clientIDKey }}
      {{- end }}
      - name: KPO_REAPER_AIRFLOW_AUTH_CLIENTSECRET
        valueFrom:
          secretKeyRef:
            name: {{ $secret }}
            key: {{ $a.clientSecretKey }}
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
      {{- if include "kpo-reaper.googleCredentialsMounted" . }}
      - name: google-credentials
        mountPath: {{ include "kpo-reaper.googleMountDir" . }}
        readOnly: true
      {{- end }}
      {{- if or $v.airflow.tls.caConfigMap $v.airflow.tls.caSecret }}
      - name: airflow-ca
        mountPath: {{ include "kpo-reaper.caMountDir" . }}
        readOnly: true
      {{- end }}
      {{- if $v.airflow.tls.clientCertSecret }}
      - name: airflow-client-tls
        mountPath: {{ include "kpo-reaper.clientCertMountDir" . }}
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
  {{- if include "kpo-reaper.googleCredentialsMounted" . }}
  - name: google-credentials
    secret:
      secretName: {{ $a.existingSecret }}
      items:
        - key: {{ $a.credentialsKey }}
          path: credentials.json
  {{- end }}
  {{- with $v.airflow.tls }}
  {{- if .caConfigMap }}
  - name: airflow-ca
    configMap:
      name: {{ .caConfigMap }}
      items:
        - key: {{ .caKey }}
          path: ca.crt
  {{- else if .caSecret }}
  - name: airflow-ca
    secret:
      secretName: {{ .caSecret }}
      items:
        - key: {{ .caKey }}
          path: ca.crt
  {{- end }}
  {{- if .clientCertSecret }}
  - name: airflow-client-tls
    secret:
      secretName: {{ .clientCertSecret }}
      items:
        - key: tls.crt
          path: tls.crt
        - key: tls.key
          path: tls.key
  {{- end }}
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
