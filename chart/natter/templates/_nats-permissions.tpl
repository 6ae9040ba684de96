{{/*
NATS users and subject permissions of natter's components. The single source is
natter.natsauth: files/nats-permissions.json is generated from it
(`python -m natter.natsauth > chart/natter/files/nats-permissions.json`; a chart
test keeps the two equal) with <namespace>, <room> and <user> placeholders that
these helpers fill in. docs/nats-permissions.md explains every subject. Each user
has its own reply inbox prefix (_INBOX_<user>) and may subscribe only below it,
so no component can read another's JetStream replies (which carry room history).
*/}}

{{/* The generated permission file with <namespace> and <room> filled in, parsed; call with (dict "ctx" $ "namespace" ns "room" room). */}}
{{- define "natter.natsauth" -}}
{{- .ctx.Files.Get "files/nats-permissions.json" | replace "<namespace>" .namespace | replace "<room>" (default "<room>" .room) }}
{{- end }}

{{/* A NATS user's reply inbox prefix (NATTER_NATS_INBOX_PREFIX); call with (dict "ctx" $ "user" name). */}}
{{- define "natter.inboxPrefix" -}}
{{- (.ctx.Files.Get "files/nats-permissions.json" | fromJson).inboxPrefix | replace "<user>" .user }}
{{- end }}

{{/* A bridge's NATS user name (bridge-<namespace>-<room>); call with (dict "ctx" $ "namespace" ns "room" room). */}}
{{- define "natter.bridgeUser" -}}
{{- (include "natter.natsauth" . | fromJson).users.bridge.name }}
{{- end }}

{{/*
The NATS users this release runs, as JSON {"users": [{name, key, permissions}]}:
the gateway, the operator (when enabled) and one user per bridged room. `key` is
the user's password key in the credentials Secret.
*/}}
{{- define "natter.natsUsers" -}}
{{- $ns := include "natter.roomNamespace" . }}
{{- $sets := (include "natter.natsauth" (dict "ctx" . "namespace" $ns) | fromJson).users }}
{{- $users := list (dict "name" "gateway" "key" "gateway-password" "permissions" $sets.gateway.permissions) }}
{{- if .Values.operator.enabled }}
{{- $users = append $users (dict "name" "operator" "key" "operator-password" "permissions" $sets.operator.permissions) }}
{{- end }}
{{- $seen := dict }}
{{- range $b := (include "natter.bridges" . | fromJson).bridges }}
{{- if not (hasKey $seen $b.user) }}
{{- $_ := set $seen $b.user true }}
{{- $set := (include "natter.natsauth" (dict "ctx" $ "namespace" $b.namespace "room" $b.room) | fromJson).users.bridge }}
{{- $users = append $users (dict "name" $set.name "key" (printf "%s-password" $set.name) "permissions" $set.permissions) }}
{{- end }}
{{- end }}
{{- toJson (dict "users" $users) }}
{{- end }}

{{/* One NATS user in NATS config syntax; call with (dict "user" "password" "permissions"). */}}
{{- define "natter.natsUser" -}}
{
  user: {{ .user | quote }}
  password: {{ .password | quote }}
  permissions: {
    {{- range $dir := list "publish" "subscribe" }}
    {{- with (index $.permissions $dir) }}
    {{- $d := . }}
    {{ $dir }}: {
      {{- range $kind := list "allow" "deny" }}
      {{- with (index $d $kind) }}
      {{ $kind }}: [
        {{- range $subject := . }}
        {{ $subject | quote }}
        {{- end }}
      ]
      {{- end }}
      {{- end }}
    }
    {{- end }}
    {{- end }}
  }
}
{{- end }}

{{/* Everything the NATS auth Secret is made of except the passwords (for a checksum). */}}
{{- define "natter.natsAuth.inputs" -}}
replicas={{ .Values.nats.replicas }} cluster={{ .Values.nats.ports.cluster }}
{{ include "natter.natsUsers" . }}
{{ include "natter.natsUser" (dict "user" "x" "password" "x" "permissions" dict) }}
{{- end }}
