// Package telemetry is the service's one door to OpenTelemetry: W3C trace
// context taken from requests and given to events, spans of the HTTP
// handlers, appends and publishes, and their export over OTLP/HTTP. The
// rest of the service sees a [Tracer], a [Span] and [Attr] values, never
// an OpenTelemetry type.
//
// # Off by default
//
// [Setup] exports spans only when the standard
// OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set
// (and neither OTEL_SDK_DISABLED=true nor OTEL_TRACES_EXPORTER=none says
// otherwise); the exporter then reads the other standard variables itself
// (headers, timeout, compression, TLS), and the sampler OTEL_TRACES_SAMPLER
// (parent-based, always on, by default). Without them nothing is sent and
// no span is made: a [Tracer] that is off, or nil, only carries the trace
// context a request came with, so that the events it causes record it.
//
// # What spans hold
//
// Span names are route patterns and fixed operation names, never a raw
// path. Attributes are methods, route patterns, statuses, account and
// stream ids, event types and counts: no user name, email, query string,
// header value (no Authorization) or client address, and errors are
// recorded by kind, not by message.
//
// # Request ids
//
// [WithRequestID] puts the id of the HTTP request being answered in a
// context; [LogHandler] adds it (as request_id), and the trace id of the
// context's span (as trace_id), to every log line logged with that
// context.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"
)

// instrumentation is the name of the tracer the service's spans come from.
const instrumentation = "github.com/licenseledger/ledger"

// propagator reads and writes the W3C traceparent and tracestate headers.
var propagator = propagation.TraceContext{}

// Tracer starts the service's spans. A nil Tracer, or one that is off,
// starts none and costs next to nothing; it still carries trace context.
type Tracer struct {
	tracer   trace.Tracer
	provider *sdktrace.TracerProvider
}

// Config is what Setup needs.
type Config struct {
	// ServiceName and ServiceVersion name the service in the exported
	// resource (OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES override).
	ServiceName, ServiceVersion string
	// Getenv reads the environment; os.Getenv in production.
	Getenv func(string) string
	// Logger receives the exporter's failures (a collector out of reach,
	// say), as warnings; nil: slog.Default().
	Logger *slog.Logger
}

// Setup returns the service's Tracer: exporting over OTLP/HTTP when the
// environment names an OTLP endpoint (see the package documentation),
// off otherwise. Call Shutdown before exiting, to send what is buffered.
func Setup(ctx context.Context, cfg Config) (*Tracer, error) {
	if !Exporting(cfg.Getenv) {
		return nil, nil
	}
	exp, err := otlptracehttp.New(ctx)
	if err != nil {
		return nil, fmt.Errorf("telemetry: OTLP exporter: %w", err)
	}
	attrs := []attribute.KeyValue{semconv.ServiceName(cfg.ServiceName)}
	if cfg.ServiceVersion != "" {
		attrs = append(attrs, semconv.ServiceVersion(cfg.ServiceVersion))
	}
	res, err := resource.New(ctx, resource.WithAttributes(attrs...), resource.WithFromEnv(), resource.WithTelemetrySDK())
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		return nil, fmt.Errorf("telemetry: resource: %w", err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	// OpenTelemetry reports what it cannot do through one handler of the
	// process; the service's log is the place for it.
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		log.Warn("tracing: spans not exported", "err", err)
	}))
	return newTracer(sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))), nil
}

// Exporting reports whether the environment asks for spans to be
// exported: an OTLP endpoint is set and the SDK and trace export are not
// disabled.
func Exporting(getenv func(string) string) bool {
	if getenv("OTEL_EXPORTER_OTLP_ENDPOINT") == "" && getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == "" {
		return false
	}
	if strings.EqualFold(strings.TrimSpace(getenv("OTEL_SDK_DISABLED")), "true") {
		return false
	}
	return !strings.EqualFold(strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER")), "none")
}

func newTracer(tp *sdktrace.TracerProvider) *Tracer {
	return &Tracer{tracer: tp.Tracer(instrumentation), provider: tp}
}

// Enabled reports whether t makes spans.
func (t *Tracer) Enabled() bool { return t != nil && t.tracer != nil }

// Shutdown sends the spans still buffered and stops t. It is safe on a
// nil or off Tracer.
func (t *Tracer) Shutdown(ctx context.Context) error {
	if t == nil || t.provider == nil {
		return nil
	}
	if err := t.provider.Shutdown(ctx); err != nil {
		return fmt.Errorf("telemetry: shutdown: %w", err)
	}
	return nil
}

// Attr is a span attribute.
type Attr = attribute.KeyValue

// String is a string attribute.
func String(key, value string) Attr { return attribute.String(key, value) }

// Int is an integer attribute.
func Int(key string, value int) Attr { return attribute.Int(key, value) }

// Int64 is an integer attribute.
func Int64(key string, value int64) Attr { return attribute.Int64(key, value) }

// Span is a span started by a Tracer; the zero Span does nothing.
type Span struct {
	span trace.Span
}

// Recording reports whether s records anything: when it does not,
// making its attributes can be skipped.
func (s Span) Recording() bool { return s.span != nil }

// SetAttributes adds attributes to s.
func (s Span) SetAttributes(attrs ...Attr) {
	if s.span != nil {
		s.span.SetAttributes(attrs...)
	}
}

// SetName renames s.
func (s Span) SetName(name string) {
	if s.span != nil {
		s.span.SetName(name)
	}
}

// Fail marks s as failed, with the kind of failure as error.type (a fixed
// word, never an error message, which could carry data).
func (s Span) Fail(kind string) {
	if s.span != nil {
		s.span.SetStatus(codes.Error, "")
		s.span.SetAttributes(semconv.ErrorTypeKey.String(kind))
	}
}

// End ends s; a non-nil err marks it failed, its kind "error" unless Fail
// named it.
func (s Span) End(err error) {
	if s.span == nil {
		return
	}
	if err != nil {
		s.span.SetStatus(codes.Error, "")
		if ro, ok := s.span.(sdktrace.ReadOnlySpan); !ok || !hasAttr(ro, semconv.ErrorTypeKey) {
			s.span.SetAttributes(semconv.ErrorTypeKey.String("error"))
		}
	}
	s.span.End()
}

func hasAttr(s sdktrace.ReadOnlySpan, k attribute.Key) bool {
	for _, a := range s.Attributes() {
		if a.Key == k {
			return true
		}
	}
	return false
}

// Start starts an internal span named name, child of ctx's span.
func (t *Tracer) Start(ctx context.Context, name string, attrs ...Attr) (context.Context, Span) {
	if !t.Enabled() {
		return ctx, Span{}
	}
	ctx, s := t.tracer.Start(ctx, name, trace.WithAttributes(attrs...))
	return ctx, Span{span: s}
}

// StartServer takes the W3C trace context of a request's headers, if valid,
// into ctx and, when t is enabled, starts the server span of the request
// as its child, named after the method until [Span.SetName] gives it the
// route. Only the method is recorded here: see [Span.SetRoute].
func (t *Tracer) StartServer(ctx context.Context, h http.Header, method string) (context.Context, Span) {
	if h.Get("traceparent") != "" {
		ctx = propagator.Extract(ctx, propagation.HeaderCarrier(h))
	}
	if !t.Enabled() {
		return ctx, Span{}
	}
	ctx, s := t.tracer.Start(ctx, method, trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(semconv.HTTPRequestMethodKey.String(method)))
	return ctx, Span{span: s}
}

// SetRoute names a server span after the request's method and route
// pattern (the pattern, never the path) and records its status; a 5xx
// status marks it failed.
func (s Span) SetRoute(method, route string, status int) {
	if s.span == nil {
		return
	}
	if route != "" {
		s.span.SetName(method + " " + route)
		s.span.SetAttributes(semconv.HTTPRoute(route))
	}
	s.span.SetAttributes(semconv.HTTPResponseStatusCodeKey.Int(status))
	if status >= 500 {
		s.span.SetStatus(codes.Error, "")
		s.span.SetAttributes(semconv.ErrorTypeKey.String(fmt.Sprint(status)))
	}
}

// StartProducer starts a producer span named name, for publishing an
// event stored with the W3C trace context traceparent and tracestate (its
// metadata's; see codec.Metadata): the span continues that trace, so a
// publish is seen in the trace of the request that caused the event. An
// empty or invalid traceparent starts a span of its own trace.
func (t *Tracer) StartProducer(ctx context.Context, traceparent, tracestate, name string, attrs ...Attr) (context.Context, Span) {
	if traceparent != "" {
		ctx = propagator.Extract(ctx, propagation.MapCarrier{"traceparent": traceparent, "tracestate": tracestate})
	}
	if !t.Enabled() {
		return ctx, Span{}
	}
	ctx, s := t.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindProducer), trace.WithAttributes(attrs...))
	return ctx, Span{span: s}
}

// TraceContext returns the W3C traceparent and tracestate of ctx's span,
// or of the remote span a request came with when no span was started;
// empty when ctx holds no valid span context. This is what a command
// records in its events.
func TraceContext(ctx context.Context) (traceparent, tracestate string) {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return "", ""
	}
	c := make(propagation.MapCarrier, 2)
	propagator.Inject(ctx, c)
	return c["traceparent"], c["tracestate"]
}

// TraceID returns the trace id of ctx's span in hex, "" when none.
func TraceID(ctx context.Context) string {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.HasTraceID() {
		return ""
	}
	return sc.TraceID().String()
}
