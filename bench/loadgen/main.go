// Command loadgen drives WebSocket chat clients against natter and its peers and
// prints one JSON document of what the clients measured.
//
// Every loop is bounded in time and count, and every address must be loopback.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"net"
	neturl "net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
)

type options struct {
	target, url, scenario, subjectPrefix, natsURL string
	rooms                                         []string
	conns, pubs, size, window, concurrency        int
	count, maxSteps                               int
	rates, fractions                              []float64
	step, warm, duration, settle, timeout         time.Duration
	procs, backend                                Procs
	compress                                      bool
}

func floats(s string) []float64 {
	var out []float64
	for _, f := range strings.Split(s, ",") {
		if v, err := strconv.ParseFloat(strings.TrimSpace(f), 64); err == nil {
			out = append(out, v)
		}
	}
	return out
}

func main() {
	var o options
	var rooms, rates, fractions, pids, backend string
	flag.StringVar(&o.target, "target", "natter", "natter | origin | socketio | centrifugo | natsws")
	flag.StringVar(&o.url, "url", "", "WebSocket URL of the target (nats URL for -scenario fill)")
	flag.StringVar(&o.scenario, "scenario", "fanout", "fanout | idle | publish | replay | churn | fill")
	flag.StringVar(&o.subjectPrefix, "subject-prefix", "chat.default.", "room subject prefix (natsws, fill)")
	flag.StringVar(&rooms, "rooms", "bench-0", "comma-separated room names")
	flag.IntVar(&o.conns, "conns", 1000, "subscribed connections (fanout, idle)")
	flag.IntVar(&o.pubs, "pubs", 10, "publishing connections")
	flag.IntVar(&o.size, "size", 100, "bytes of message text")
	flag.IntVar(&o.window, "window", 16, "publishes in flight per publisher (publish)")
	flag.IntVar(&o.concurrency, "concurrency", 50, "parallel dials (idle) or workers (churn)")
	flag.IntVar(&o.count, "count", 100000, "messages to replay or fill; cycles at most (churn)")
	flag.IntVar(&o.maxSteps, "max-steps", 12, "rate steps at most while searching the maximum (fanout)")
	flag.StringVar(&rates, "rates", "auto", "publish rates per second to step through, or auto (fanout)")
	flag.StringVar(&fractions, "fractions", "0.25,0.5,0.9", "fractions of the maximum to measure latency at")
	flag.DurationVar(&o.step, "step", 5*time.Second, "measured length of one rate step")
	flag.DurationVar(&o.warm, "warm", time.Second, "unmeasured lead-in of each step")
	flag.DurationVar(&o.duration, "duration", 5*time.Second, "measured length (publish, churn)")
	flag.DurationVar(&o.settle, "settle", 2*time.Second, "quiet time before memory is read (idle)")
	flag.DurationVar(&o.timeout, "timeout", 120*time.Second, "hard limit for the whole run")
	flag.StringVar(&pids, "pids", "", "gateway process ids: CPU and RSS are read from /proc")
	flag.StringVar(&backend, "backend-pids", "", "broker process ids (NATS, Redis): CPU only")
	flag.BoolVar(&o.compress, "compress", false, "offer permessage-deflate")
	flag.StringVar(&o.natsURL, "nats", "", "NATS URL (fill)")
	flag.Parse()
	o.rooms = strings.Split(rooms, ",")
	o.fractions = floats(fractions)
	if rates != "auto" {
		o.rates = floats(rates)
	}
	o.procs, o.backend = parsePids(pids), parsePids(backend)
	if err := loopbackOnly(o.url); err != nil {
		fail(err)
	}
	time.AfterFunc(o.timeout, func() { fail(fmt.Errorf("run exceeded -timeout %s", o.timeout)) })

	var result any
	var err error
	switch o.scenario {
	case "fill":
		result, err = fill(o)
	default:
		dial, derr := dialFor(o.target, o.url, o.subjectPrefix, o.compress)
		if derr != nil {
			fail(derr)
		}
		switch o.scenario {
		case "fanout":
			result, err = fanout(o, dial)
		case "idle":
			result, err = idle(o, dial)
		case "publish":
			result, err = publish(o, dial)
		case "replay":
			result, err = replay(o, dial)
		case "churn":
			result, err = churn(o, dial)
		default:
			err = fmt.Errorf("unknown scenario %q", o.scenario)
		}
	}
	if err != nil {
		fail(err)
	}
	out, _ := json.Marshal(result)
	os.Stdout.Write(append(out, '\n'))
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "loadgen:", err)
	os.Exit(1)
}

func loopbackOnly(raw string) error {
	u, err := neturl.Parse(raw)
	if err != nil {
		return err
	}
	host := u.Hostname()
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("refusing non-loopback target %q", raw)
}

// connect dials n clients with bounded parallelism; joined to rooms round-robin
// unless join is false.
func connect(o options, dial dialFunc, m *Meter, n int, prefix string, join bool,
	onAck func(i int) func()) ([]Client, map[string]int, int) {
	clients := make([]Client, n)
	members := map[string]int{}
	var mu sync.Mutex
	var failed atomic.Int64
	sem := make(chan struct{}, max(1, o.concurrency))
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Add(1)
		go func(i int) {
			defer func() { <-sem; wg.Done() }()
			var hook func()
			if onAck != nil {
				hook = onAck(i)
			}
			c, err := dial(m, prefix+strconv.Itoa(i), hook)
			if err != nil {
				failed.Add(1)
				m.Error("dial: " + err.Error())
				return
			}
			if join {
				room := o.rooms[i%len(o.rooms)]
				if err := c.Join(room, -1); err != nil {
					failed.Add(1)
					m.Error("join: " + err.Error())
					c.Close()
					return
				}
				mu.Lock()
				members[room]++
				mu.Unlock()
			}
			clients[i] = c
		}(i)
	}
	wg.Wait()
	live := clients[:0]
	for _, c := range clients {
		if c != nil {
			live = append(live, c)
		}
	}
	return live, members, int(failed.Load())
}

func closeAll(clients []Client) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for _, c := range clients {
		sem <- struct{}{}
		wg.Add(1)
		go func(c Client) { defer func() { <-sem; wg.Done() }(); c.Close() }(c)
	}
	wg.Wait()
}

// Step is one measured publish rate of the fan-out scenario.
type Step struct {
	Phase           string  `json:"phase"`
	OfferedRate     float64 `json:"offered_rate"`
	PublishRate     float64 `json:"publish_rate"`
	Expected        int64   `json:"expected"`
	Delivered       int64   `json:"delivered"`
	DeliveredPerSec float64 `json:"delivered_per_s"`
	Ratio           float64 `json:"ratio"`
	P50             float64 `json:"p50_ms"`
	P99             float64 `json:"p99_ms"`
	P999            float64 `json:"p999_ms"`
	GatewayCPU      float64 `json:"gateway_cpu_s"`
	PerCPUSecond    float64 `json:"delivered_per_gateway_cpu_s"`
	BackendCPU      float64 `json:"backend_cpu_s"`
	LoadgenCPU      float64 `json:"loadgen_cpu_s"`
	LoadgenCeiling  float64 `json:"delivered_per_loadgen_cpu_s"`
	Seconds         float64 `json:"seconds"`
	Errors          int64   `json:"errors"`
	Sustained       bool    `json:"sustained"`
}

func fanout(o options, dial dialFunc) (any, error) {
	m := newMeter()
	subs, members, failed := connect(o, dial, m, o.conns, "sub", true, nil)
	pubs, _, pfailed := connect(o, dial, m, o.pubs, "pub", false, nil)
	defer closeAll(pubs)
	defer closeAll(subs)
	if len(pubs) == 0 || len(subs) == 0 {
		return nil, fmt.Errorf("could not connect (%d subscribers, %d publishers): %s",
			len(subs), len(pubs), m.LastError())
	}
	var steps []Step
	run := func(phase string, rate float64) Step {
		s := fanoutStep(o, m, pubs, members, rate)
		s.Phase = phase
		steps = append(steps, s)
		fmt.Fprintf(os.Stderr, "loadgen %s %s rate=%.0f delivered/s=%.0f ratio=%.3f p99=%.1fms ok=%v\n",
			o.target, phase, rate, s.DeliveredPerSec, s.Ratio, s.P99, s.Sustained)
		return s
	}
	best := Step{}
	if o.rates != nil {
		for _, r := range o.rates {
			if s := run("fixed", r); s.Sustained && s.DeliveredPerSec > best.DeliveredPerSec {
				best = s
			}
		}
	} else {
		rate, failedAt := 20.0, 0.0
		for range o.maxSteps {
			s := run("search", rate)
			if !s.Sustained {
				failedAt = rate
				break
			}
			best = s
			rate *= 2
		}
		if failedAt > 0 && best.OfferedRate > 0 {
			for _, f := range []float64{0.7, 0.85} {
				mid := best.OfferedRate + (failedAt-best.OfferedRate)*f
				if s := run("refine", mid); s.Sustained {
					best = s
				} else {
					break
				}
			}
		}
	}
	var latency []Step
	if best.OfferedRate > 0 {
		for _, f := range o.fractions {
			s := run(fmt.Sprintf("at-%.0f%%", f*100), best.OfferedRate*f)
			latency = append(latency, s)
		}
	}
	return map[string]any{
		"scenario": "fanout", "target": o.target, "connections": len(subs), "rooms": len(o.rooms),
		"publishers": len(pubs), "size": o.size, "connect_failures": failed + pfailed,
		"steps": steps, "max": best, "latency": latency, "errors": m.errors.Load(),
		"last_error": m.LastError(),
	}, nil
}

// quiesce waits until nothing has arrived for half a second (at most 30 s), so a
// step does not inherit the backlog of an overloaded one before it.
func quiesce(m *Meter) {
	last, still := m.received.Load(), time.Now()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
		if got := m.received.Load(); got != last {
			last, still = got, time.Now()
		} else if time.Since(still) >= 500*time.Millisecond {
			return
		}
	}
}

func fanoutStep(o options, m *Meter, pubs []Client, members map[string]int, rate float64) Step {
	quiesce(m)
	m.hist.Reset()
	begin := now()
	from := begin + int64(o.warm)
	to := from + int64(o.step)
	m.window.Set(from, to)
	delivered0, errors0 := m.delivered.Load(), m.errors.Load()
	var expected, published atomic.Int64
	var cpu0, back0, self0 float64
	var cpuOnce sync.Once
	mark := func() { cpu0, back0, self0 = o.procs.CPU(), o.backend.CPU(), selfCPU() }
	per := rate / float64(len(pubs))
	var wg sync.WaitGroup
	for i, c := range pubs {
		wg.Add(1)
		go func(i int, c Client) {
			defer wg.Done()
			room := o.rooms[i%len(o.rooms)]
			sent := 0
			tick := time.NewTicker(5 * time.Millisecond)
			defer tick.Stop()
			for range tick.C {
				t := now()
				if t >= to {
					return
				}
				if i == 0 && t >= from {
					cpuOnce.Do(mark)
				}
				due := int(per * float64(t-begin) / 1e9)
				for ; sent < due; sent++ {
					t = now()
					if err := c.Send(room, text(o.size, t)); err != nil {
						m.Error("send: " + err.Error())
						return
					}
					if t >= from && t < to {
						published.Add(1)
						expected.Add(int64(members[room]))
					}
				}
			}
		}(i, c)
	}
	wg.Wait()
	cpuOnce.Do(mark)
	// Drain: wait until deliveries stop arriving (bounded).
	want := expected.Load()
	last, still := m.delivered.Load()-delivered0, 0
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
		got := m.delivered.Load() - delivered0
		if got >= want {
			break
		}
		if got == last {
			if still++; still >= 10 {
				break
			}
		} else {
			still, last = 0, got
		}
	}
	seconds := o.step.Seconds()
	cpu, back, self := o.procs.CPU()-cpu0, o.backend.CPU()-back0, selfCPU()-self0
	delivered := m.delivered.Load() - delivered0
	q, _ := m.hist.Quantiles(0.5, 0.99, 0.999)
	s := Step{
		OfferedRate: rate, PublishRate: float64(published.Load()) / seconds,
		Expected: want, Delivered: delivered, DeliveredPerSec: float64(delivered) / seconds,
		P50: q[0], P99: q[1], P999: q[2], GatewayCPU: cpu, BackendCPU: back, LoadgenCPU: self,
		Seconds: seconds, Errors: m.errors.Load() - errors0,
	}
	if want > 0 {
		s.Ratio = float64(delivered) / float64(want)
	}
	if cpu > 0 {
		s.PerCPUSecond = float64(delivered) / cpu
	}
	if self > 0 {
		s.LoadgenCeiling = float64(delivered) / self
	}
	s.Sustained = s.PublishRate >= 0.95*rate && s.Ratio >= 0.97 && s.P99 < 1000 && s.Errors == 0
	return s
}

func idle(o options, dial dialFunc) (any, error) {
	m := newMeter()
	warm, _, _ := connect(o, dial, m, len(o.rooms), "warm", true, nil)
	defer closeAll(warm)
	time.Sleep(o.settle)
	base := o.procs.RSS()
	began := time.Now()
	clients, members, failed := connect(o, dial, m, o.conns, "idle", true, nil)
	defer closeAll(clients)
	connectSeconds := time.Since(began).Seconds()
	time.Sleep(o.settle)
	rss := o.procs.RSS()
	// Every idle connection must still be alive: one message per room reaches all.
	pub, _, _ := connect(o, dial, m, 1, "probe", false, nil)
	want := int64(len(warm))
	for _, n := range members {
		want += int64(n)
	}
	received0 := m.received.Load()
	if len(pub) == 1 {
		for _, room := range o.rooms {
			pub[0].Send(room, text(o.size, -1))
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for m.received.Load()-received0 < want && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	closeAll(pub)
	perConn := 0.0
	if len(clients) > 0 {
		perConn = float64(rss-base) / float64(len(clients))
	}
	return map[string]any{
		"scenario": "idle", "target": o.target, "requested": o.conns, "connections": len(clients),
		"connect_failures": failed, "connect_seconds": connectSeconds,
		"rss_before": base, "rss_after": rss, "bytes_per_connection": perConn,
		"probe_expected": want, "probe_received": m.received.Load() - received0,
		"errors": m.errors.Load(), "last_error": m.LastError(), "compress": o.compress,
	}, nil
}

func publish(o options, dial dialFunc) (any, error) {
	m := newMeter()
	sems := make([]chan struct{}, o.pubs)
	for i := range sems {
		sems[i] = make(chan struct{}, o.window)
	}
	hook := func(i int) func() {
		return func() {
			select {
			case <-sems[i]:
			default:
			}
		}
	}
	pubs, _, failed := connect(o, dial, m, o.pubs, "pub", false, hook)
	defer closeAll(pubs)
	if len(pubs) == 0 {
		return nil, fmt.Errorf("no publisher connected: %s", m.LastError())
	}
	stop := time.Now().Add(o.warm + o.duration)
	var acks0, sent atomic.Int64
	var cpu0, back0 float64
	var wg sync.WaitGroup
	for i, c := range pubs {
		wg.Add(1)
		go func(i int, c Client) {
			defer wg.Done()
			room := o.rooms[i%len(o.rooms)]
			for time.Now().Before(stop) {
				select {
				case sems[i] <- struct{}{}:
				case <-time.After(10 * time.Second):
					m.Error("no ack for 10s")
					return
				}
				if err := c.Send(room, text(o.size, 0)); err != nil {
					m.Error("send: " + err.Error())
					return
				}
				sent.Add(1)
			}
		}(i, c)
	}
	time.Sleep(o.warm)
	acks0.Store(m.acks.Load())
	cpu0, back0 = o.procs.CPU(), o.backend.CPU()
	time.Sleep(o.duration)
	acks := m.acks.Load() - acks0.Load()
	cpu, back := o.procs.CPU()-cpu0, o.backend.CPU()-back0
	wg.Wait()
	for deadline := time.Now().Add(5 * time.Second); m.acks.Load() < sent.Load() && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	res := map[string]any{
		"scenario": "publish", "target": o.target, "publishers": len(pubs), "window": o.window,
		"acks": acks, "acks_per_s": float64(acks) / o.duration.Seconds(), "gateway_cpu_s": cpu,
		"backend_cpu_s": back, "sent": sent.Load(), "acked_total": m.acks.Load(),
		"connect_failures": failed, "errors": m.errors.Load(), "last_error": m.LastError(),
	}
	if cpu > 0 {
		res["acks_per_gateway_cpu_s"] = float64(acks) / cpu
	}
	return res, nil
}

func replay(o options, dial dialFunc) (any, error) {
	m := newMeter()
	c, err := dial(m, "replayer", nil)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	cpu0 := o.procs.CPU()
	began := time.Now()
	if err := c.Join(o.rooms[0], 0); err != nil {
		return nil, err
	}
	deadline := began.Add(o.timeout - 5*time.Second)
	for m.received.Load() < int64(o.count) && time.Now().Before(deadline) {
		time.Sleep(2 * time.Millisecond)
	}
	elapsed := time.Since(began).Seconds()
	got := m.received.Load()
	return map[string]any{
		"scenario": "replay", "target": o.target, "wanted": o.count, "received": got,
		"seconds": elapsed, "messages_per_s": float64(got) / elapsed,
		"gateway_cpu_s": o.procs.CPU() - cpu0, "complete": got >= int64(o.count),
		"errors": m.errors.Load(), "last_error": m.LastError(),
	}, nil
}

func churn(o options, dial dialFunc) (any, error) {
	m := newMeter()
	hist := newHistogram()
	var done atomic.Int64
	stop := time.Now().Add(o.duration)
	cpu0 := o.procs.CPU()
	var wg sync.WaitGroup
	for w := range o.concurrency {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; time.Now().Before(stop) && done.Load() < int64(o.count); i++ {
				t := now()
				c, err := dial(m, "churn"+strconv.Itoa(w)+"x"+strconv.Itoa(i), nil)
				if err != nil {
					m.Error("dial: " + err.Error())
					time.Sleep(10 * time.Millisecond)
					continue
				}
				if err := c.Join(o.rooms[(w+i)%len(o.rooms)], -1); err != nil {
					m.Error("join: " + err.Error())
					c.Close()
					continue
				}
				c.Close()
				hist.Add(now() - t)
				done.Add(1)
			}
		}(w)
	}
	wg.Wait()
	elapsed := o.duration.Seconds()
	q, _ := hist.Quantiles(0.5, 0.99)
	return map[string]any{
		"scenario": "churn", "target": o.target, "workers": o.concurrency, "cycles": done.Load(),
		"cycles_per_s": float64(done.Load()) / elapsed, "p50_ms": q[0], "p99_ms": q[1],
		"gateway_cpu_s": o.procs.CPU() - cpu0, "errors": m.errors.Load(), "last_error": m.LastError(),
	}, nil
}

// fill stores count messages in a room's stream, the way the gateway stores them.
func fill(o options) (any, error) {
	if err := loopbackOnly(o.natsURL); err != nil {
		return nil, err
	}
	nc, err := nats.Connect(o.natsURL, nats.MaxReconnects(0))
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	js, err := nc.JetStream(nats.PublishAsyncMaxPending(2048))
	if err != nil {
		return nil, err
	}
	subject := o.subjectPrefix + o.rooms[0] + ".msg"
	body := string(text(o.size, 0))
	began := time.Now()
	for i := range o.count {
		id := "fill-" + strconv.Itoa(i)
		payload := `{"id":"` + id + `","user":"filler","text":"` + body + `","ts":"2025-01-01T00:00:00.000Z"}`
		if _, err := js.PublishAsync(subject, []byte(payload), nats.MsgId(id)); err != nil {
			return nil, err
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(60 * time.Second):
		return nil, fmt.Errorf("fill: acks missing after 60s")
	}
	return map[string]any{"scenario": "fill", "count": o.count, "seconds": time.Since(began).Seconds(),
		"rate": float64(o.count) / math.Max(time.Since(began).Seconds(), 1e-9)}, nil
}
