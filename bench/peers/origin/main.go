// Command origin is the seed design of natter, written in Go as a benchmark peer:
// gorilla/websocket in front of nats.go, one JetStream subscription per socket
// per room, every message encoded for each socket, JetStream publish with ack.
//
// It speaks the subset of natter's protocol the load generator uses: hello,
// join (live, or replay from since), send (acked once stored) and message frames.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nats-io/nats.go"
)

var upgrader = websocket.Upgrader{
	ReadBufferSize:  4096,
	WriteBufferSize: 4096,
	CheckOrigin:     func(*http.Request) bool { return true },
}

type inbound struct {
	Type  string `json:"type"`
	User  string `json:"user"`
	Room  string `json:"room"`
	ID    string `json:"id"`
	Text  string `json:"text"`
	Since *int64 `json:"since"`
}

type stored struct {
	ID   string `json:"id"`
	User string `json:"user"`
	Text string `json:"text"`
	TS   string `json:"ts"`
}

type messageFrame struct {
	Type string `json:"type"`
	Room string `json:"room"`
	Seq  uint64 `json:"seq"`
	stored
}

type server struct {
	nc     *nats.Conn
	js     nats.JetStreamContext
	prefix string
}

type conn struct {
	s    *server
	ws   *websocket.Conn
	out  chan []byte
	user string
	mu   sync.Mutex
	subs map[string]*nats.Subscription
	done chan struct{}
}

func (c *conn) send(frame any) {
	data, err := json.Marshal(frame)
	if err != nil {
		return
	}
	select {
	case c.out <- data:
	case <-c.done:
	}
}

func (c *conn) writer() {
	for {
		select {
		case data := <-c.out:
			c.ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
			if err := c.ws.WriteMessage(websocket.TextMessage, data); err != nil {
				c.ws.Close()
				return
			}
		case <-c.done:
			return
		}
	}
}

func (c *conn) join(room string, since *int64) {
	subject := c.s.prefix + room + ".msg"
	opts := []nats.SubOpt{nats.OrderedConsumer(), nats.DeliverNew()}
	var last uint64
	if info, err := c.s.js.StreamInfo(streamName(c.s.prefix, room)); err == nil {
		last = info.State.LastSeq
	} else {
		c.send(map[string]string{"type": "error", "code": "unknown_room", "message": err.Error()})
		return
	}
	if since != nil {
		opts = []nats.SubOpt{nats.OrderedConsumer(), nats.StartSequence(uint64(*since) + 1)}
	}
	c.mu.Lock()
	if old := c.subs[room]; old != nil {
		old.Unsubscribe()
	}
	c.mu.Unlock()
	c.send(map[string]any{"type": "joined", "room": room, "last_seq": last})
	sub, err := c.s.js.Subscribe(subject, func(msg *nats.Msg) {
		meta, err := msg.Metadata()
		if err != nil {
			return
		}
		frame := messageFrame{Type: "message", Room: room, Seq: meta.Sequence.Stream}
		if json.Unmarshal(msg.Data, &frame.stored) != nil {
			return
		}
		c.send(frame)
	}, opts...)
	if err != nil {
		c.send(map[string]string{"type": "error", "code": "unavailable", "message": err.Error()})
		return
	}
	sub.SetPendingLimits(-1, -1)
	c.mu.Lock()
	c.subs[room] = sub
	c.mu.Unlock()
}

func (c *conn) publish(room, id, text string) {
	if id == "" {
		id = nats.NewInbox()[7:]
	}
	body, _ := json.Marshal(stored{ID: id, User: c.user, Text: text,
		TS: time.Now().UTC().Format("2006-01-02T15:04:05.000Z")})
	future, err := c.s.js.PublishAsync(c.s.prefix+room+".msg", body, nats.MsgId(id))
	if err != nil {
		c.send(map[string]string{"type": "error", "code": "unavailable", "message": err.Error(), "ref": id})
		return
	}
	go func() {
		select {
		case ack := <-future.Ok():
			c.send(map[string]any{"type": "ack", "id": id, "room": room, "seq": ack.Sequence})
		case err := <-future.Err():
			c.send(map[string]string{"type": "error", "code": "unavailable", "message": err.Error(), "ref": id})
		case <-c.done:
		}
	}()
}

func (c *conn) serve() {
	defer func() {
		close(c.done)
		c.mu.Lock()
		for _, sub := range c.subs {
			sub.Unsubscribe()
		}
		c.mu.Unlock()
		c.ws.Close()
	}()
	go c.writer()
	for {
		_, data, err := c.ws.ReadMessage()
		if err != nil {
			return
		}
		var in inbound
		if err := json.Unmarshal(data, &in); err != nil {
			c.send(map[string]string{"type": "error", "code": "bad_request", "message": "frame is not JSON"})
			continue
		}
		switch in.Type {
		case "hello":
			c.user = in.User
			c.send(map[string]string{"type": "welcome", "user": in.User})
		case "join":
			c.join(in.Room, in.Since)
		case "send":
			c.publish(in.Room, in.ID, in.Text)
		default:
			c.send(map[string]string{"type": "error", "code": "bad_request", "message": "unknown frame type"})
		}
	}
}

// streamName maps "chat.<ns>." and a room to natter's stream name ROOM_<ns>_<room>.
func streamName(prefix, room string) string {
	ns := prefix[len("chat.") : len(prefix)-1]
	return "ROOM_" + ns + "_" + room
}

func main() {
	addr := flag.String("listen", "127.0.0.1:0", "address to serve /ws on")
	natsURL := flag.String("nats", nats.DefaultURL, "NATS URL")
	prefix := flag.String("subject-prefix", "chat.default.", "room subject prefix")
	flag.Parse()
	nc, err := nats.Connect(*natsURL, nats.Name("origin-peer"), nats.MaxReconnects(-1))
	if err != nil {
		log.Fatal(err)
	}
	js, err := nc.JetStream(nats.PublishAsyncMaxPending(8192))
	if err != nil {
		log.Fatal(err)
	}
	s := &server{nc: nc, js: js, prefix: *prefix}
	http.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		ws, err := upgrader.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		c := &conn{s: s, ws: ws, out: make(chan []byte, 1024), subs: map[string]*nats.Subscription{},
			done: make(chan struct{})}
		go c.serve()
	})
	http.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		if nc.IsConnected() {
			fmt.Fprintln(w, "ok")
			return
		}
		w.WriteHeader(http.StatusServiceUnavailable)
	})
	fmt.Fprintln(os.Stderr, "origin peer listening on", *addr)
	log.Fatal(http.ListenAndServe(*addr, nil))
}
