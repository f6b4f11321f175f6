// Package otlptest is an OTLP trace receiver for tests: a real HTTP
// (protobuf, and JSON) or gRPC server on loopback that decodes export
// requests with the OTLP protobuf types and keeps the spans it received.
package otlptest

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// Span is one received span, flattened for assertions.
type Span struct {
	TraceID  string // hex
	SpanID   string // hex
	ParentID string // hex; "" for a root
	Name     string
	Kind     tracepb.Span_SpanKind
	Start    time.Time
	End      time.Time
	Attrs    map[string]string // values as text
	Error    bool              // status code ERROR
	OK       bool              // status code OK
	// Resource is the resource's attributes; Scope the instrumentation
	// scope's name.
	Resource map[string]string
	Scope    string
}

// Receiver collects the spans of every export request it accepts.
type Receiver struct {
	mu        sync.Mutex
	countOnly bool // keep no spans, only count them (StartHTTPCounter)
	count     int
	spans     []Span
	requests  int
	header    http.Header // of the last HTTP export
	changed   chan struct{}

	// URL is the HTTP receiver's base URL (post to URL+"/v1/traces"), or
	// the gRPC receiver's "http://host:port".
	URL  string
	stop func()
}

func newReceiver() *Receiver { return &Receiver{changed: make(chan struct{})} }

// StartHTTP serves OTLP/HTTP on a loopback port until Close.
func StartHTTP() (*Receiver, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := newReceiver()
	srv := &http.Server{Handler: http.HandlerFunc(r.serveHTTP), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	r.URL = "http://" + ln.Addr().String()
	r.stop = func() { _ = srv.Close() }
	return r, nil
}

// StartHTTPCounter is StartHTTP for load tests: every request is decoded,
// but the spans are only counted (see Count), not kept.
func StartHTTPCounter() (*Receiver, error) {
	r, err := StartHTTP()
	if err == nil {
		r.mu.Lock()
		r.countOnly = true
		r.mu.Unlock()
	}
	return r, err
}

// Count returns how many spans arrived.
func (r *Receiver) Count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.count
}

// StartGRPC serves OTLP/gRPC on a loopback port until Close.
func StartGRPC() (*Receiver, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := newReceiver()
	srv := grpc.NewServer()
	collectortrace.RegisterTraceServiceServer(srv, grpcService{r: r})
	go func() { _ = srv.Serve(ln) }()
	r.URL = "http://" + ln.Addr().String()
	r.stop = srv.Stop
	return r, nil
}

// Close stops the receiver.
func (r *Receiver) Close() { r.stop() }

type grpcService struct {
	collectortrace.UnimplementedTraceServiceServer
	r *Receiver
}

func (g grpcService) Export(_ context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	g.r.add(req)
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

func (r *Receiver) serveHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost || req.URL.Path != "/v1/traces" {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	var body io.Reader = req.Body
	if req.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(req.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = zr
	}
	data, err := io.ReadAll(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var msg collectortrace.ExportTraceServiceRequest
	switch req.Header.Get("Content-Type") {
	case "application/x-protobuf":
		err = proto.Unmarshal(data, &msg)
	case "application/json":
		err = protojson.Unmarshal(data, &msg)
	default:
		http.Error(w, "unsupported content type", http.StatusUnsupportedMediaType)
		return
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	r.header = req.Header.Clone()
	r.mu.Unlock()
	r.add(&msg)
	out, _ := proto.Marshal(&collectortrace.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = io.Copy(w, bytes.NewReader(out))
}

func (r *Receiver) add(req *collectortrace.ExportTraceServiceRequest) {
	r.mu.Lock()
	if r.countOnly {
		for _, rs := range req.GetResourceSpans() {
			for _, ss := range rs.GetScopeSpans() {
				r.count += len(ss.GetSpans())
			}
		}
		r.requests++
		r.mu.Unlock()
		return
	}
	r.mu.Unlock()
	var got []Span
	for _, rs := range req.GetResourceSpans() {
		res := attrs(rs.GetResource().GetAttributes())
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				got = append(got, Span{
					TraceID:  hex.EncodeToString(s.GetTraceId()),
					SpanID:   hex.EncodeToString(s.GetSpanId()),
					ParentID: hex.EncodeToString(s.GetParentSpanId()),
					Name:     s.GetName(),
					Kind:     s.GetKind(),
					Start:    time.Unix(0, int64(s.GetStartTimeUnixNano())),
					End:      time.Unix(0, int64(s.GetEndTimeUnixNano())),
					Attrs:    attrs(s.GetAttributes()),
					Error:    s.GetStatus().GetCode() == tracepb.Status_STATUS_CODE_ERROR,
					OK:       s.GetStatus().GetCode() == tracepb.Status_STATUS_CODE_OK,
					Resource: res,
					Scope:    ss.GetScope().GetName(),
				})
			}
		}
	}
	r.mu.Lock()
	r.spans = append(r.spans, got...)
	r.count += len(got)
	r.requests++
	close(r.changed)
	r.changed = make(chan struct{})
	r.mu.Unlock()
}

func attrs(kvs []*commonpb.KeyValue) map[string]string {
	out := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		out[kv.GetKey()] = valueText(kv.GetValue())
	}
	return out
}

func valueText(v *commonpb.AnyValue) string {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return x.StringValue
	case *commonpb.AnyValue_BoolValue:
		if x.BoolValue {
			return "true"
		}
		return "false"
	case *commonpb.AnyValue_IntValue:
		return strconv.FormatInt(x.IntValue, 10)
	default:
		b, _ := protojson.Marshal(v)
		return string(b)
	}
}

// Spans returns a copy of every span received so far.
func (r *Receiver) Spans() []Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Span(nil), r.spans...)
}

// Header returns the headers of the last HTTP export request.
func (r *Receiver) Header() http.Header {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.header.Clone()
}

// Requests returns how many export requests arrived.
func (r *Receiver) Requests() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.requests
}

// Wait waits until ok holds for the spans received, or timeout passes,
// and returns the spans and whether ok held.
func (r *Receiver) Wait(timeout time.Duration, ok func([]Span) bool) ([]Span, bool) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		spans := append([]Span(nil), r.spans...)
		ch := r.changed
		r.mu.Unlock()
		if ok(spans) {
			return spans, true
		}
		select {
		case <-ch:
		case <-deadline.C:
			return spans, false
		}
	}
}

// Trace returns the spans of one trace.
func Trace(spans []Span, traceID string) []Span {
	var out []Span
	for _, s := range spans {
		if s.TraceID == traceID {
			out = append(out, s)
		}
	}
	return out
}

// Named returns the first span called name, or nil.
func Named(spans []Span, name string) *Span {
	for i := range spans {
		if spans[i].Name == name {
			return &spans[i]
		}
	}
	return nil
}
