{{/* Conventional name helpers. */}}

{{- define "natter.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Object name prefix: the release name, or `<release>-<chart>` when the release
name does not already contain the chart name. Kept short enough that
`<fullname>-nats-headless` and the StatefulSet's pod names stay valid.
*/}}
{{- define "natter.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "natter.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels every object carries. */}}
{{- define "natter.labels" -}}
helm.sh/chart: {{ include "natter.chart" . }}
app.kubernetes.io/name: {{ include "natter.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: natter
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels; call with (dict "ctx" $ "component" "gateway"). */}}
{{- define "natter.selectorLabels" -}}
app.kubernetes.io/name: {{ include "natter.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Full label set of one component; call like natter.selectorLabels. */}}
{{- define "natter.componentLabels" -}}
{{ include "natter.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Names of the objects other templates, NOTES.txt and the docs refer to. */}}
{{- define "natter.nats.name" -}}{{ include "natter.fullname" . }}-nats{{- end }}
{{- define "natter.nats.headless" -}}{{ include "natter.fullname" . }}-nats-headless{{- end }}
{{- define "natter.gateway.name" -}}{{ include "natter.fullname" . }}-gateway{{- end }}
{{- define "natter.operator.name" -}}{{ include "natter.fullname" . }}-operator{{- end }}
{{- define "natter.credentials.name" -}}{{ include "natter.fullname" . }}-credentials{{- end }}
{{- define "natter.natsAuth.name" -}}{{ include "natter.fullname" . }}-nats-auth{{- end }}
{{- define "natter.users.name" -}}{{ include "natter.fullname" . }}-users{{- end }}

{{/* The Secret holding the built-in users file (key users.yaml): the user's own or the chart's. */}}
{{- define "natter.users.secretName" -}}
{{- default (include "natter.users.name" .) .Values.auth.existingUsersSecret }}
{{- end }}

{{/* Where the gateways find the users file (NATTER_USERS_FILE). */}}
{{- define "natter.users.dir" -}}/etc/natter/users{{- end }}

{{/*
The built-in users of auth.usersFile followed by auth.users, as JSON
{"users": [{name, password_hash, groups}]}; templates/validate.yaml checks them.
*/}}
{{- define "natter.users" -}}
{{- $out := list }}
{{- with .Values.auth.usersFile }}
{{- $doc := fromYaml . }}
{{- if hasKey $doc "Error" }}
{{- fail (printf "auth.usersFile is not YAML: %s" (index $doc "Error")) }}
{{- end }}
{{- $listed := default list (index $doc "users") }}
{{- if not (kindIs "slice" $listed) }}
{{- fail "auth.usersFile must hold `users: [{name, password_hash, groups}]` as `natter users add` writes it" }}
{{- end }}
{{- $out = concat $out $listed }}
{{- end }}
{{- $out = concat $out .Values.auth.users }}
{{- toJson (dict "users" $out) }}
{{- end }}

{{/* Namespace whose rooms the gateways (and by default the bridges) serve. */}}
{{- define "natter.roomNamespace" -}}
{{- default .Release.Namespace .Values.gateway.roomNamespace }}
{{- end }}

{{- define "natter.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
Comma-separated client URLs of every NATS server by its stable pod DNS name,
so clients fail over between servers rather than through one Service address.
tls:// when the client port requires TLS: the server certificate must then
cover these names (*.<headless Service>.<namespace>.svc).
*/}}
{{- define "natter.nats.urls" -}}
{{- $urls := list }}
{{- $nats := include "natter.nats.name" . }}
{{- $headless := include "natter.nats.headless" . }}
{{- $scheme := ternary "tls" "nats" .Values.nats.tls.client.enabled }}
{{- range $i := until (int .Values.nats.replicas) }}
{{- $urls = append $urls (printf "%s://%s-%d.%s.%s.svc:%d" $scheme $nats $i $headless $.Release.Namespace (int $.Values.nats.ports.client)) }}
{{- end }}
{{- join "," $urls }}
{{- end }}

{{/*
Twitch bridges with defaults filled in, as JSON: {"bridges": [{name, channel,
room, namespace, secretName, user}]}. `name` defaults to the channel made
DNS-safe; `user` is the NATS user of the bridge's room (natter.natsauth's
bridge-<namespace>-<room>, shared by bridges of the same room).
*/}}
{{- define "natter.bridges" -}}
{{- $out := list }}
{{- range $b := .Values.bridges.twitch }}
{{- $name := default ($b.channel | lower | replace "_" "-" | trimPrefix "-" | trimSuffix "-") $b.name }}
{{- $ns := default (include "natter.roomNamespace" $) $b.namespace }}
{{- $out = append $out (dict
  "name" $name
  "channel" $b.channel
  "room" $b.room
  "namespace" $ns
  "secretName" (default "" $b.secretName)
  "user" (include "natter.bridgeUser" (dict "ctx" $ "namespace" $ns "room" $b.room))) }}
{{- end }}
{{- toJson (dict "bridges" $out) }}
{{- end }}

{{/*
Environment every natter process needs to reach NATS as its own user, with its
own reply inbox prefix; call with (dict "ctx" $ "user" "gateway").
*/}}
{{- define "natter.natsEnv" -}}
- name: NATTER_NATS_URL
  value: {{ include "natter.nats.urls" .ctx | quote }}
- name: NATTER_NATS_USER
  value: {{ .user | quote }}
- name: NATTER_NATS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "natter.credentials.name" .ctx }}
      key: {{ printf "%s-password" .user }}
- name: NATTER_NATS_INBOX_PREFIX
  value: {{ include "natter.inboxPrefix" . | quote }}
{{- with .ctx.Values.nats.tls.client }}
{{- if .enabled }}
- name: NATTER_NATS_TLS_CA
  value: {{ printf "%s/ca.crt" (include "natter.natsTls.dir" $.ctx) | quote }}
{{- if .verifyClients }}
- name: NATTER_NATS_TLS_CERT
  value: {{ printf "%s/tls.crt" (include "natter.natsTls.dir" $.ctx) | quote }}
- name: NATTER_NATS_TLS_KEY
  value: {{ printf "%s/tls.key" (include "natter.natsTls.dir" $.ctx) | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/*
NATS client TLS of the natter pods (nats.tls.client): the CA that signed the
servers' certificate (only ca.crt of nats.tls.client.secretName, never the
server's key) and, for mutual TLS, the client certificate of
nats.tls.client.clientSecretName, in one read-only directory. Include the
mount and the volume only when nats.tls.client.enabled.
*/}}
{{- define "natter.natsTls.dir" -}}/etc/natter/nats-tls{{- end }}

{{- define "natter.natsTls.volumeMount" -}}
- name: nats-tls
  mountPath: {{ include "natter.natsTls.dir" . }}
  readOnly: true
{{- end }}

{{- define "natter.natsTls.volume" -}}
{{- with .Values.nats.tls.client -}}
- name: nats-tls
  projected:
    defaultMode: 0440
    sources:
      - secret:
          name: {{ .secretName }}
          items:
            - key: ca.crt
              path: ca.crt
      {{- if .verifyClients }}
      - secret:
          name: {{ .clientSecretName }}
          items:
            - key: tls.crt
              path: tls.crt
            - key: tls.key
              path: tls.key
      {{- end }}
{{- end }}
{{- end }}

{{/* Scratch space for a read-only root filesystem. */}}
{{- define "natter.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
{{- end }}
