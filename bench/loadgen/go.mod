module natter.dev/bench/loadgen

go 1.24

require (
	github.com/gorilla/websocket v1.5.3
	github.com/nats-io/nats.go v1.52.0
)
