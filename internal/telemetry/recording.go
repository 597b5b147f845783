package telemetry

import (
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// Recorder keeps in memory every span of the Tracer [NewRecording]
// returned, for tests to look at.
type Recorder struct {
	exp *tracetest.InMemoryExporter
}

// RecordedSpan is an ended span as a Recorder kept it.
type RecordedSpan struct {
	Name string
	// Kind is "server", "internal", "producer"...
	Kind                          string
	TraceID, SpanID, ParentSpanID string
	// Failed is set when the span's status is an error.
	Failed     bool
	Attributes map[string]string
}

// NewRecording returns an enabled Tracer whose spans are kept, as they
// end, by the Recorder: sampling always, exporting nothing.
func NewRecording() (*Tracer, *Recorder) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp), sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.AlwaysSample())))
	return newTracer(tp), &Recorder{exp: exp}
}

// Spans returns the spans ended so far, in the order they ended.
func (r *Recorder) Spans() []RecordedSpan {
	var out []RecordedSpan
	for _, s := range r.exp.GetSpans() {
		rs := RecordedSpan{
			Name: s.Name, Kind: s.SpanKind.String(),
			TraceID: s.SpanContext.TraceID().String(), SpanID: s.SpanContext.SpanID().String(),
			Failed: s.Status.Code.String() == "Error", Attributes: map[string]string{},
		}
		if s.Parent.IsValid() {
			rs.ParentSpanID = s.Parent.SpanID().String()
		}
		for _, a := range s.Attributes {
			rs.Attributes[string(a.Key)] = a.Value.Emit()
		}
		out = append(out, rs)
	}
	return out
}

// Reset forgets the spans kept so far.
func (r *Recorder) Reset() { r.exp.Reset() }
