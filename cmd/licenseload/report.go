package main

import (
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// latency is a distribution in milliseconds.
type latency struct {
	P50 float64 `json:"p50_ms"`
	P90 float64 `json:"p90_ms"`
	P99 float64 `json:"p99_ms"`
	Max float64 `json:"max_ms"`
}

// summarize returns the percentiles of d (nearest rank), sorting it.
func summarize(d []time.Duration) latency {
	if len(d) == 0 {
		return latency{}
	}
	slices.Sort(d)
	q := func(p float64) float64 {
		i := int(math.Ceil(p*float64(len(d)))) - 1
		i = max(0, min(i, len(d)-1))
		return ms(d[i])
	}
	return latency{P50: q(0.50), P90: q(0.90), P99: q(0.99), Max: ms(d[len(d)-1])}
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }

// phaseReport is what one measured phase did.
type phaseReport struct {
	Requests   int            `json:"requests"`
	Seconds    float64        `json:"seconds"`
	PerSecond  float64        `json:"per_second"`
	Latency    latency        `json:"latency"`
	OK         int            `json:"ok"`
	Refused    int            `json:"refused"`
	Errors     int            `json:"errors"`
	Status     map[string]int `json:"status"`
	FirstError []string       `json:"first_errors,omitempty"`
	ByKind     []kindReport   `json:"by_kind,omitempty"`
	// CPU per request in microseconds: of the service (when its pid is
	// known) and of this generator.
	ServiceCPU   float64 `json:"service_cpu_us_per_request,omitempty"`
	GeneratorCPU float64 `json:"generator_cpu_us_per_request"`
}

// setCPU records the CPU the service and the generator spent in a phase.
func (p *phaseReport) setCPU(self, service time.Duration) {
	if p.Requests == 0 {
		return
	}
	per := func(d time.Duration) float64 { return math.Round(float64(d)/float64(p.Requests)/1e2) / 10 }
	p.GeneratorCPU = per(self)
	p.ServiceCPU = per(service)
}

// kindReport is one command kind's share of a phase.
type kindReport struct {
	Kind    string  `json:"kind"`
	Count   int     `json:"count"`
	Refused int     `json:"refused"`
	Latency latency `json:"latency"`
}

// runReport is one run against one service.
type runReport struct {
	Target     string       `json:"target"`
	Durability string       `json:"durability,omitempty"`
	Accounts   int          `json:"accounts"`
	Clients    int          `json:"clients"`
	Mix        string       `json:"mix"`
	WarmUp     float64      `json:"warm_up_seconds"`
	Baseline   *phaseReport `json:"baseline,omitempty"`
	Load       phaseReport  `json:"load"`
}

func merge(tallies []*tally, wall time.Duration, byKind bool) phaseReport {
	r := phaseReport{Seconds: math.Round(wall.Seconds()*1000) / 1000, Status: make(map[string]int)}
	var all []time.Duration
	for k := range numKinds {
		var kd []time.Duration
		refused := 0
		for _, t := range tallies {
			kd = append(kd, t.lat[k]...)
			refused += t.refused[k]
		}
		all = append(all, kd...)
		r.Refused += refused
		if byKind && len(kd) > 0 {
			r.ByKind = append(r.ByKind, kindReport{Kind: k.String(), Count: len(kd), Refused: refused, Latency: summarize(kd)})
		}
	}
	for _, t := range tallies {
		r.Errors += t.errors
		for st, n := range t.status {
			key := strconv.Itoa(st)
			if st == 0 {
				key = "none"
			}
			r.Status[key] += n
		}
		for _, e := range t.errFirst {
			if len(r.FirstError) < 5 {
				r.FirstError = append(r.FirstError, e)
			}
		}
	}
	r.Requests = len(all)
	r.OK = r.Requests - r.Refused - r.Errors
	if wall > 0 {
		r.PerSecond = math.Round(float64(r.Requests) / wall.Seconds())
	}
	r.Latency = summarize(all)
	return r
}

func (r runReport) writeText(w io.Writer) {
	title := r.Target
	if r.Durability != "" {
		title += ", durability " + r.Durability
	}
	fmt.Fprintf(w, "== %s: %d accounts, %d clients, mix %s (warm-up %.1fs)\n", title, r.Accounts, r.Clients, r.Mix, r.WarmUp)
	if r.Baseline != nil {
		writePhase(w, "baseline GET /healthz", *r.Baseline)
	}
	writePhase(w, "commands", r.Load)
	for _, k := range r.Load.ByKind {
		fmt.Fprintf(w, "   %-10s %8d  refused %6d  p50 %6.2f  p90 %6.2f  p99 %6.2f  max %7.2f ms\n",
			k.Kind, k.Count, k.Refused, k.Latency.P50, k.Latency.P90, k.Latency.P99, k.Latency.Max)
	}
}

func writePhase(w io.Writer, name string, p phaseReport) {
	fmt.Fprintf(w, "%-22s %9.0f/s  %d in %.2fs  p50 %.2f  p90 %.2f  p99 %.2f  max %.2f ms\n",
		name, p.PerSecond, p.Requests, p.Seconds, p.Latency.P50, p.Latency.P90, p.Latency.P99, p.Latency.Max)
	var sts []string
	for _, k := range slices.Sorted(maps.Keys(p.Status)) {
		sts = append(sts, k+":"+strconv.Itoa(p.Status[k]))
	}
	fmt.Fprintf(w, "   ok %d  refused %d  errors %d  status %s\n", p.OK, p.Refused, p.Errors, strings.Join(sts, " "))
	if p.ServiceCPU > 0 {
		fmt.Fprintf(w, "   CPU per request: service %.1f us, generator %.1f us\n", p.ServiceCPU, p.GeneratorCPU)
	} else {
		fmt.Fprintf(w, "   CPU per request: generator %.1f us\n", p.GeneratorCPU)
	}
	for _, e := range p.FirstError {
		fmt.Fprintf(w, "   error: %s\n", e)
	}
}
