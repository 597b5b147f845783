package httpapi

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"runtime/debug"
	"strings"
	"unicode/utf8"
)

// serve answers one request: it refuses a request target that is not
// UTF-8, routes the request, answers a path no route knows (404) or a
// method its routes do not take (405 with Allow) with a problem, and turns
// a panic into a 500 problem.
func (s *server) serve(w *statusRecorder, r *http.Request) {
	defer s.recoverPanic(w, r)
	if r.Body == nil {
		// A server's requests always have a body; a request handed over
		// in process (the console's) may not.
		r.Body = http.NoBody
	}
	if err := checkTarget(r.URL); err != nil {
		s.send(w, r, s.problemResponse(r, err))
		return
	}
	if h := s.fastRoute(r); h != nil {
		h(w, r)
		return
	}
	if r.RequestURI == "*" {
		// The mux answers "*" itself, before looking for a route; it is
		// answered as a path no route knows, as every unmatched one.
		h, _ := s.mux.Handler(r)
		s.unmatched(w, r, h)
		return
	}
	// The mux routes the request once: a route's handler takes the
	// answer over (see handle); what the mux answers itself, for a
	// request no route matched, is kept aside in w until then.
	w.routing = true
	s.mux.ServeHTTP(w, r)
	if !w.routing {
		return
	}
	w.routing = false
	s.answerUnmatched(w, r, w.aside())
}

// checkTarget refuses a path or a query that is not valid UTF-8 once
// percent-decoded, and a query that cannot be parsed: every identifier and
// parameter of the API is text, and such a value would otherwise reach
// handlers, logs and answers.
func checkTarget(u *url.URL) error {
	if !utf8.ValidString(u.Path) {
		return newProblem(ProblemInvalidPath, http.StatusBadRequest,
			"the request path is not valid UTF-8 once percent-decoded")
	}
	if u.RawQuery == "" {
		return nil
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return &problemError{slug: ProblemInvalidQuery, status: http.StatusBadRequest, err: err,
			detail: "the query string cannot be parsed: parameters are name=value pairs separated by &, percent-encoded"}
	}
	for k, vs := range q {
		if !utf8.ValidString(k) {
			return newProblem(ProblemInvalidQuery, http.StatusBadRequest,
				"a query parameter name is not valid UTF-8 once percent-decoded")
		}
		for _, v := range vs {
			if !utf8.ValidString(v) {
				return newProblem(ProblemInvalidQuery, http.StatusBadRequest,
					"query parameter "+strings.ToValidUTF8(k, "\uFFFD")+" is not valid UTF-8 once percent-decoded")
			}
		}
	}
	return nil
}

// unmatched answers a request no route matched. h is what the mux would
// answer (plain text): its status and Allow header are kept, its body is
// replaced by a problem. A redirect to the cleaned path goes out as is.
func (s *server) unmatched(w http.ResponseWriter, r *http.Request, h http.Handler) {
	c := &captured{header: http.Header{}, status: http.StatusOK}
	h.ServeHTTP(c, r)
	s.answerUnmatched(w, r, c)
}

// answerUnmatched answers a request no route matched from what the mux
// answered, c.
func (s *server) answerUnmatched(w http.ResponseWriter, r *http.Request, c *captured) {
	if !c.wrote {
		c.status = http.StatusOK // the mux answers every request it routes
	}
	switch c.status {
	case http.StatusNotFound:
		s.send(w, r, s.problemResponse(r, newProblem(ProblemNotFound, http.StatusNotFound, "no such resource")))
	case http.StatusMethodNotAllowed:
		allow := c.header.Get("Allow")
		resp := s.problemResponse(r, newProblem(ProblemMethodNotAllowed, http.StatusMethodNotAllowed,
			"this resource answers only "+allow))
		resp.header.Set("Allow", allow)
		s.send(w, r, resp)
	default:
		for k, v := range c.header {
			w.Header()[k] = v
		}
		w.WriteHeader(c.status)
		w.Write(c.body.Bytes())
	}
}

// captured is a ResponseWriter that keeps what is written.
type captured struct {
	header http.Header
	status int
	body   bytes.Buffer
	wrote  bool
}

func (c *captured) Header() http.Header {
	if c.header == nil {
		c.header = http.Header{}
	}
	return c.header
}

func (c *captured) WriteHeader(code int) {
	if !c.wrote {
		c.status, c.wrote = code, true
	}
}

func (c *captured) Write(b []byte) (int, error) {
	if !c.wrote {
		c.status, c.wrote = http.StatusOK, true
	}
	return c.body.Write(b)
}

// recoverPanic is the last line of defence: a panic while answering is
// logged with its stack, counted, and answered with a 500 problem when
// nothing was written yet. When part of the answer is already out, the
// connection is aborted instead, so that the client cannot take a cut
// answer for a whole one.
func (s *server) recoverPanic(w *statusRecorder, r *http.Request) {
	v := recover()
	if v == nil {
		return
	}
	if err, ok := v.(error); ok && errors.Is(err, http.ErrAbortHandler) {
		panic(v)
	}
	w.routing = false
	s.metrics.panicked()
	s.log.LogAttrs(r.Context(), slog.LevelError, "panic while answering",
		slog.String("method", r.Method), slog.String("route", r.Pattern),
		slog.String("panic", fmt.Sprint(v)), slog.String("stack", string(debug.Stack())))
	if w.wrote {
		panic(http.ErrAbortHandler)
	}
	id := w.Header().Get(HeaderRequestID)
	clear(w.Header()) // whatever the handler meant to send with its answer
	w.Header().Set(HeaderRequestID, id)
	s.send(w, r, s.problemResponse(r, newProblem(ProblemInternal, http.StatusInternalServerError,
		"an internal error occurred; it has been logged")))
}
