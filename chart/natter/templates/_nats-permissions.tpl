{{/*
NATS subject permissions of natter's components, as YAML (rendered to JSON in
users.conf). Subjects follow DESIGN.md: a room is stream ROOM_<ns>_<room> on
chat.<ns>.<room>.>, ephemeral signals use chatx.<ns>.<room>.>, the registry is
the KV bucket natter-rooms (stream KV_natter-rooms). JetStream API subjects name
a stream as a single token, so per-room scoping is possible only where the
stream is known in advance (a bridge's room, the registry bucket).
*/}}

{{/* Gateways: chat in their namespace, read and follow room streams, read the registry. */}}
{{- define "natter.permissions.gateway" -}}
{{- $ns := include "natter.roomNamespace" . -}}
publish:
  allow:
    # store chat messages (JetStream acks them) and relay typing/presence
    - "chat.{{ $ns }}.>"
    - "chatx.{{ $ns }}.>"
    # read-only JetStream API: account and stream info, direct gets, the
    # ordered consumers that replay and follow rooms (and the registry)
    - "$JS.API.INFO"
    - "$JS.API.STREAM.INFO.*"
    - "$JS.API.STREAM.NAMES"
    - "$JS.API.STREAM.MSG.GET.*"
    - "$JS.API.DIRECT.GET.*"
    - "$JS.API.DIRECT.GET.*.>"
    - "$JS.API.CONSUMER.CREATE.*"
    - "$JS.API.CONSUMER.CREATE.*.>"
    - "$JS.API.CONSUMER.DELETE.*.*"
    - "$JS.API.CONSUMER.INFO.*.*"
    - "$JS.API.CONSUMER.MSG.NEXT.*.*"
    # consumer acks and flow-control replies
    - "$JS.ACK.>"
    - "$JS.FC.>"
subscribe:
  allow:
    - "_INBOX.>"
    - "chat.{{ $ns }}.>"
    - "chatx.{{ $ns }}.>"
{{- end }}

{{/* Operator: create, update, inspect and delete streams; write the registry. No chat. */}}
{{- define "natter.permissions.operator" -}}
publish:
  allow:
    - "$JS.API.INFO"
    - "$JS.API.STREAM.CREATE.*"
    - "$JS.API.STREAM.UPDATE.*"
    - "$JS.API.STREAM.DELETE.*"
    - "$JS.API.STREAM.INFO.*"
    - "$JS.API.STREAM.NAMES"
    - "$JS.API.STREAM.LIST"
    # registry reads and writes (KV get, put, delete)
    - "$JS.API.STREAM.MSG.GET.KV_natter-rooms"
    - "$JS.API.DIRECT.GET.KV_natter-rooms"
    - "$JS.API.DIRECT.GET.KV_natter-rooms.>"
    - "$KV.natter-rooms.>"
subscribe:
  allow:
    - "_INBOX.>"
{{- end }}

{{/* A bridge: chat in its one room, and the registry read-only. Call with (dict "b" $bridge). */}}
{{- define "natter.permissions.bridge" -}}
{{- $stream := printf "ROOM_%s_%s" .b.namespace .b.room -}}
publish:
  allow:
    - "chat.{{ .b.namespace }}.{{ .b.room }}.>"
    - "$JS.API.INFO"
    {{- range $s := list $stream "KV_natter-rooms" }}
    - "$JS.API.STREAM.INFO.{{ $s }}"
    - "$JS.API.STREAM.MSG.GET.{{ $s }}"
    - "$JS.API.DIRECT.GET.{{ $s }}"
    - "$JS.API.DIRECT.GET.{{ $s }}.>"
    - "$JS.API.CONSUMER.CREATE.{{ $s }}"
    - "$JS.API.CONSUMER.CREATE.{{ $s }}.>"
    - "$JS.API.CONSUMER.DELETE.{{ $s }}.*"
    - "$JS.API.CONSUMER.INFO.{{ $s }}.*"
    - "$JS.FC.{{ $s }}.>"
    {{- end }}
subscribe:
  allow:
    - "_INBOX.>"
{{- end }}

{{/* One NATS user in NATS config syntax; call with (dict "user" "password" "permissions"). */}}
{{- define "natter.natsUser" -}}
{
  user: {{ .user | quote }}
  password: {{ .password | quote }}
  permissions: {
    {{- range $dir := list "publish" "subscribe" }}
    {{- with (index $.permissions $dir) }}
    {{ $dir }}: {
      allow: [
        {{- range $subject := .allow }}
        {{ $subject | quote }}
        {{- end }}
      ]
    }
    {{- end }}
    {{- end }}
  }
}
{{- end }}

{{/* Everything the NATS auth Secret is made of except the passwords (for a checksum). */}}
{{- define "natter.natsAuth.inputs" -}}
{{ include "natter.bridges" . }}
operator={{ .Values.operator.enabled }} replicas={{ .Values.nats.replicas }} cluster={{ .Values.nats.ports.cluster }}
{{ include "natter.permissions.gateway" . }}
{{ include "natter.permissions.operator" . }}
{{- range $b := (include "natter.bridges" . | fromJson).bridges }}
{{ include "natter.permissions.bridge" (dict "b" $b) }}
{{- end }}
{{ include "natter.natsUser" (dict "user" "x" "password" "x" "permissions" dict) }}
{{- end }}
