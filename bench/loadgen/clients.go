package main

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nats-io/nats.go"
)

// Client is one simulated user, whatever the protocol of the target.
type Client interface {
	// Join subscribes to a room and returns once the target confirmed it.
	// since < 0: live messages only; since >= 0: every stored message after it.
	Join(room string, since int64) error
	// Send publishes a message without waiting; each ack calls the ack hook.
	Send(room string, text []byte) error
	Close()
}

type dialFunc func(m *Meter, user string, onAck func()) (Client, error)

var dialer = websocket.Dialer{
	HandshakeTimeout:  15 * time.Second,
	ReadBufferSize:    8192,
	WriteBufferSize:   8192,
	EnableCompression: false,
}

var ids atomic.Int64

// runID keeps message ids unique across runs: JetStream deduplicates by id.
var runID = strconv.FormatInt(time.Now().UnixNano(), 36)

func nextID() int64 { return ids.Add(1) }

func dialFor(target, url, subjectPrefix string, compress bool) (dialFunc, error) {
	d := dialer
	d.EnableCompression = compress
	switch target {
	case "natter", "origin":
		return func(m *Meter, user string, onAck func()) (Client, error) {
			return dialJSON(&d, url, m, user, onAck)
		}, nil
	case "socketio":
		return func(m *Meter, user string, onAck func()) (Client, error) {
			return dialSocketIO(&d, url, m, onAck)
		}, nil
	case "centrifugo":
		return func(m *Meter, user string, onAck func()) (Client, error) {
			return dialCentrifugo(&d, url, m, onAck)
		}, nil
	case "natsws":
		return func(m *Meter, user string, onAck func()) (Client, error) {
			return dialNATS(url, subjectPrefix, m, user, onAck)
		}, nil
	}
	return nil, fmt.Errorf("unknown target %q", target)
}

// ws is what the WebSocket protocols share: one writer lock, a reader loop,
// a signal per awaited reply.
type ws struct {
	c       *websocket.Conn
	mu      sync.Mutex
	m       *Meter
	onAck   func()
	replies chan int64 // ids (or 0) of handshake and join confirmations
	closed  atomic.Bool
}

func (w *ws) write(data []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.c.SetWriteDeadline(time.Now().Add(30 * time.Second))
	return w.c.WriteMessage(websocket.TextMessage, data)
}

func (w *ws) ack() {
	w.m.acks.Add(1)
	if w.onAck != nil {
		w.onAck()
	}
}

// refused counts an error reply to a send; it frees the send's window slot.
func (w *ws) refused(what string) {
	w.m.Error(what)
	if w.onAck != nil {
		w.onAck()
	}
}

func (w *ws) signal(id int64) {
	select {
	case w.replies <- id:
	default:
	}
}

func (w *ws) await(id int64, what string) error {
	timer := time.NewTimer(30 * time.Second)
	defer timer.Stop()
	for {
		select {
		case got, ok := <-w.replies:
			if !ok {
				return errors.New("connection closed waiting for " + what)
			}
			if got == id {
				return nil
			}
		case <-timer.C:
			return errors.New("timed out waiting for " + what)
		}
	}
}

func (w *ws) loop(handle func([]byte)) {
	defer close(w.replies)
	var buf bytes.Buffer
	for {
		_, r, err := w.c.NextReader()
		if err != nil {
			if !w.closed.Load() {
				w.m.Error("read: " + err.Error())
			}
			return
		}
		buf.Reset()
		if _, err := buf.ReadFrom(r); err != nil {
			if !w.closed.Load() {
				w.m.Error("read: " + err.Error())
			}
			return
		}
		handle(buf.Bytes())
	}
}

func (w *ws) Close() {
	w.closed.Store(true)
	w.mu.Lock()
	w.c.SetWriteDeadline(time.Now().Add(time.Second))
	w.c.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""))
	w.mu.Unlock()
	w.c.Close()
}

func newWS(d *websocket.Dialer, url string, m *Meter, onAck func()) (*ws, error) {
	c, _, err := d.Dial(url, nil)
	if err != nil {
		return nil, err
	}
	c.SetReadLimit(64 << 20)
	return &ws{c: c, m: m, onAck: onAck, replies: make(chan int64, 4)}, nil
}

// natter's protocol (DESIGN.md), also spoken by the Go origin peer.

type jsonClient struct {
	*ws
	user string
}

var (
	typeAck     = []byte(`"type":"ack"`)
	typeJoined  = []byte(`"type":"joined"`)
	typeWelcome = []byte(`"type":"welcome"`)
	typeError   = []byte(`"type":"error"`)
)

func dialJSON(d *websocket.Dialer, url string, m *Meter, user string, onAck func()) (Client, error) {
	w, err := newWS(d, url, m, onAck)
	if err != nil {
		return nil, err
	}
	c := &jsonClient{ws: w, user: user}
	go w.loop(c.handle)
	if err := w.write([]byte(`{"type":"hello","user":"` + user + `"}`)); err != nil {
		w.Close()
		return nil, err
	}
	if err := w.await(0, "welcome"); err != nil {
		w.Close()
		return nil, err
	}
	return c, nil
}

func (c *jsonClient) handle(data []byte) {
	c.m.Scan(data)
	if n := bytes.Count(data, typeAck); n > 0 {
		for range n {
			c.ack()
		}
	}
	if bytes.Contains(data, typeWelcome) || bytes.Contains(data, typeJoined) {
		c.signal(0)
	}
	if n := bytes.Count(data, typeError); n > 0 {
		for range n {
			c.refused(string(data[:min(len(data), 300)]))
		}
	}
}

func (c *jsonClient) Join(room string, since int64) error {
	msg := `{"type":"join","room":"` + room + `","history":0}`
	if since >= 0 {
		msg = `{"type":"join","room":"` + room + `","since":` + strconv.FormatInt(since, 10) + `}`
	}
	if err := c.write([]byte(msg)); err != nil {
		return err
	}
	return c.await(0, "joined")
}

func (c *jsonClient) Send(room string, text []byte) error {
	b := make([]byte, 0, len(text)+80)
	b = append(b, `{"type":"send","room":"`...)
	b = append(b, room...)
	b = append(b, `","id":"`...)
	b = append(b, c.user...)
	b = append(b, '-')
	b = append(b, runID...)
	b = append(b, '-')
	b = strconv.AppendInt(b, nextID(), 10)
	b = append(b, `","text":"`...)
	b = append(b, text...)
	b = append(b, `"}`...)
	return c.write(b)
}

// Socket.IO v5 over Engine.IO v4, WebSocket transport only.

type sioClient struct {
	*ws
	joinID atomic.Int64
}

func dialSocketIO(d *websocket.Dialer, url string, m *Meter, onAck func()) (Client, error) {
	w, err := newWS(d, url, m, onAck)
	if err != nil {
		return nil, err
	}
	c := &sioClient{ws: w}
	c.joinID.Store(-1)
	go w.loop(c.handle)
	if err := w.await(0, "engine.io open"); err != nil {
		w.Close()
		return nil, err
	}
	if err := w.write([]byte("40")); err != nil {
		w.Close()
		return nil, err
	}
	if err := w.await(-2, "socket.io connect"); err != nil {
		w.Close()
		return nil, err
	}
	return c, nil
}

func (c *sioClient) handle(data []byte) {
	if len(data) == 0 {
		return
	}
	switch {
	case data[0] == '0':
		c.signal(0)
	case data[0] == '2':
		c.write([]byte("3"))
	case bytes.HasPrefix(data, []byte("42")):
		c.m.Scan(data)
	case bytes.HasPrefix(data, []byte("43")):
		end := bytes.IndexByte(data, '[')
		if end < 0 {
			return
		}
		id, _ := strconv.ParseInt(string(data[2:end]), 10, 64)
		if id == c.joinID.Load() {
			c.signal(id)
		} else {
			c.ack()
		}
	case bytes.HasPrefix(data, []byte("40")):
		c.signal(-2)
	case bytes.HasPrefix(data, []byte("44")):
		c.m.Error(string(data))
	}
}

func (c *sioClient) Join(room string, since int64) error {
	id := nextID()
	c.joinID.Store(id)
	msg := `42` + strconv.FormatInt(id, 10) + `["join",{"room":"` + room + `","since":` +
		strconv.FormatInt(since, 10) + `}]`
	if err := c.write([]byte(msg)); err != nil {
		return err
	}
	return c.await(id, "join ack")
}

func (c *sioClient) Send(room string, text []byte) error {
	b := make([]byte, 0, len(text)+80)
	b = append(b, "42"...)
	b = strconv.AppendInt(b, nextID(), 10)
	b = append(b, `["send",{"room":"`...)
	b = append(b, room...)
	b = append(b, `","text":"`...)
	b = append(b, text...)
	b = append(b, `"}]`...)
	return c.write(b)
}

// Centrifugo's JSON client protocol (v2): newline-delimited replies and pushes.

type centClient struct {
	*ws
	joinID atomic.Int64
}

func dialCentrifugo(d *websocket.Dialer, url string, m *Meter, onAck func()) (Client, error) {
	w, err := newWS(d, url, m, onAck)
	if err != nil {
		return nil, err
	}
	c := &centClient{ws: w}
	c.joinID.Store(1)
	go w.loop(c.handle)
	if err := w.write([]byte(`{"id":1,"connect":{"name":"bench"}}`)); err != nil {
		w.Close()
		return nil, err
	}
	if err := w.await(1, "connect reply"); err != nil {
		w.Close()
		return nil, err
	}
	return c, nil
}

var idPrefix = []byte(`{"id":`)

func (c *centClient) handle(data []byte) {
	for len(data) > 0 {
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		switch {
		case len(line) == 2 && line[0] == '{' && line[1] == '}':
			c.write([]byte("{}"))
		case bytes.HasPrefix(line, idPrefix):
			end := bytes.IndexByte(line[len(idPrefix):], ',')
			if end < 0 {
				end = bytes.IndexByte(line[len(idPrefix):], '}')
			}
			id, _ := strconv.ParseInt(string(line[len(idPrefix):len(idPrefix)+end]), 10, 64)
			switch {
			case id == c.joinID.Load():
				c.signal(id)
			case bytes.Contains(line, []byte(`"error":`)):
				c.refused(string(line))
			default:
				c.ack()
			}
		default:
			c.m.Scan(line)
		}
	}
}

func (c *centClient) Join(room string, since int64) error {
	id := nextID()
	c.joinID.Store(id)
	msg := `{"id":` + strconv.FormatInt(id, 10) + `,"subscribe":{"channel":"` + room + `"}}`
	if err := c.write([]byte(msg)); err != nil {
		return err
	}
	return c.await(id, "subscribe reply")
}

func (c *centClient) Send(room string, text []byte) error {
	b := make([]byte, 0, len(text)+100)
	b = append(b, `{"id":`...)
	b = strconv.AppendInt(b, nextID(), 10)
	b = append(b, `,"publish":{"channel":"`...)
	b = append(b, room...)
	b = append(b, `","data":{"user":"bench","text":"`...)
	b = append(b, text...)
	b = append(b, `"}}}`...)
	return c.write(b)
}

// NATS spoken directly over the server's WebSocket listener (nats.go, ws:// URL).

type natsClient struct {
	nc     *nats.Conn
	js     nats.JetStreamContext
	m      *Meter
	onAck  func()
	prefix string
	user   string
}

func dialNATS(url, prefix string, m *Meter, user string, onAck func()) (Client, error) {
	nc, err := nats.Connect(url,
		nats.Name("bench-"+user), nats.MaxReconnects(0), nats.Timeout(15*time.Second),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			m.Error("nats: " + err.Error())
		}),
	)
	if err != nil {
		return nil, err
	}
	js, err := nc.JetStream(nats.PublishAsyncMaxPending(4096))
	if err != nil {
		nc.Close()
		return nil, err
	}
	return &natsClient{nc: nc, js: js, m: m, onAck: onAck, prefix: prefix, user: user}, nil
}

func (c *natsClient) Join(room string, since int64) error {
	subject := c.prefix + room + ".msg"
	handler := func(msg *nats.Msg) { c.m.Scan(msg.Data) }
	var err error
	if since < 0 {
		_, err = c.nc.Subscribe(subject, handler)
	} else {
		_, err = c.js.Subscribe(subject, handler, nats.OrderedConsumer(),
			nats.StartSequence(uint64(since+1)))
	}
	if err != nil {
		return err
	}
	if err := c.nc.Flush(); err != nil {
		return err
	}
	return nil
}

func (c *natsClient) Send(room string, text []byte) error {
	id := c.user + "-" + runID + "-" + strconv.FormatInt(nextID(), 10)
	b := make([]byte, 0, len(text)+100)
	b = append(b, `{"id":"`...)
	b = append(b, id...)
	b = append(b, `","user":"`...)
	b = append(b, c.user...)
	b = append(b, `","text":"`...)
	b = append(b, text...)
	b = append(b, `","ts":"`...)
	b = time.Now().UTC().AppendFormat(b, "2006-01-02T15:04:05.000Z")
	b = append(b, `"}`...)
	future, err := c.js.PublishAsync(c.prefix+room+".msg", b, nats.MsgId(id))
	if err != nil {
		return err
	}
	go func() {
		select {
		case <-future.Ok():
			c.m.acks.Add(1)
			if c.onAck != nil {
				c.onAck()
			}
		case err := <-future.Err():
			c.m.Error("publish: " + err.Error())
		}
	}()
	return nil
}

func (c *natsClient) Close() { c.nc.Close() }
