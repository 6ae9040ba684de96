package main

import (
	"bytes"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// start is the one clock every timestamp in a run is measured against.
var start = time.Now()

func now() int64 { return int64(time.Since(start)) }

// marker opens the text of every message the load generator sends:
// "~lg~<send time in ns since start>~" and then padding.
var marker = []byte("~lg~")

// text builds a message text of exactly size bytes carrying its send time.
func text(size int, sent int64) []byte {
	b := make([]byte, 0, size+24)
	b = append(b, marker...)
	b = strconv.AppendInt(b, sent, 10)
	b = append(b, '~')
	for len(b) < size {
		b = append(b, 'x')
	}
	return b
}

// Histogram of latencies in 10 µs buckets up to 20 s, safe for concurrent use.
type Histogram struct {
	buckets []atomic.Uint32
}

const bucketNs = 10_000
const bucketCount = 2_000_000

func newHistogram() *Histogram { return &Histogram{buckets: make([]atomic.Uint32, bucketCount)} }

func (h *Histogram) Add(ns int64) {
	i := ns / bucketNs
	if i < 0 {
		i = 0
	}
	if i >= bucketCount {
		i = bucketCount - 1
	}
	h.buckets[i].Add(1)
}

func (h *Histogram) Reset() {
	for i := range h.buckets {
		h.buckets[i].Store(0)
	}
}

// Quantiles in milliseconds, and the sample count.
func (h *Histogram) Quantiles(qs ...float64) ([]float64, uint64) {
	counts := make([]uint32, bucketCount)
	var total uint64
	for i := range h.buckets {
		c := h.buckets[i].Load()
		counts[i] = c
		total += uint64(c)
	}
	out := make([]float64, len(qs))
	if total == 0 {
		return out, 0
	}
	for qi, q := range qs {
		want := uint64(q*float64(total) + 0.5)
		if want < 1 {
			want = 1
		}
		var seen uint64
		for i, c := range counts {
			seen += uint64(c)
			if seen >= want {
				out[qi] = float64(i+1) * bucketNs / 1e6
				break
			}
		}
	}
	return out, total
}

// Window says which send times count in the current measurement.
type Window struct {
	from, to atomic.Int64
}

func (w *Window) Set(from, to int64) { w.from.Store(from); w.to.Store(to) }

func (w *Window) In(t int64) bool { return t >= w.from.Load() && t < w.to.Load() }

// Meter counts what the clients see: deliveries (with latency), acks, errors.
type Meter struct {
	window    Window
	hist      *Histogram
	delivered atomic.Int64 // deliveries sent inside the window
	received  atomic.Int64 // every delivery, whenever sent
	acks      atomic.Int64
	errors    atomic.Int64
	lastError atomic.Value
}

func newMeter() *Meter {
	m := &Meter{hist: newHistogram()}
	m.window.Set(1<<62, 1<<62)
	return m
}

// Scan counts every marked message in one received WebSocket or NATS message.
func (m *Meter) Scan(data []byte) int {
	found := 0
	at := now()
	for {
		i := bytes.Index(data, marker)
		if i < 0 {
			return found
		}
		data = data[i+len(marker):]
		j := bytes.IndexByte(data, '~')
		if j < 0 {
			return found
		}
		sent, err := strconv.ParseInt(string(data[:j]), 10, 64)
		data = data[j:]
		if err != nil {
			continue
		}
		found++
		m.received.Add(1)
		if sent > 0 && m.window.In(sent) {
			m.delivered.Add(1)
			m.hist.Add(at - sent)
		}
	}
}

func (m *Meter) Error(what string) {
	m.errors.Add(1)
	m.lastError.Store(what)
}

func (m *Meter) LastError() string {
	if v, ok := m.lastError.Load().(string); ok {
		return v
	}
	return ""
}

// Procs reads CPU time and resident memory of other processes from /proc.
type Procs []int

func parsePids(s string) Procs {
	var out Procs
	for _, f := range strings.Split(s, ",") {
		if pid, err := strconv.Atoi(strings.TrimSpace(f)); err == nil && pid > 0 {
			out = append(out, pid)
		}
	}
	return out
}

var clockTicks = 100.0 // USER_HZ on Linux

// CPU seconds (user + system) summed over the processes.
func (p Procs) CPU() float64 {
	total := 0.0
	for _, pid := range p {
		raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			continue
		}
		s := string(raw)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		if len(fields) < 13 {
			continue
		}
		utime, _ := strconv.ParseFloat(fields[11], 64)
		stime, _ := strconv.ParseFloat(fields[12], 64)
		total += (utime + stime) / clockTicks
	}
	return total
}

// RSS in bytes summed over the processes.
func (p Procs) RSS() int64 {
	var total int64
	for _, pid := range p {
		raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(raw), "\n") {
			if strings.HasPrefix(line, "VmRSS:") {
				kb, _ := strconv.ParseInt(strings.Fields(line)[1], 10, 64)
				total += kb * 1024
			}
		}
	}
	return total
}

// selfCPU is the load generator's own CPU seconds.
func selfCPU() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return tv(ru.Utime) + tv(ru.Stime)
}
