package usage

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// counterNames are the count columns, in order.
var counterNames = []string{"calls", "ok", "tool_errors", "errors", "denied", "timeouts"}

func (c Counts) values() []int64 {
	return []int64{c.Calls, c.OK, c.ToolErrors, c.Errors, c.Denied, c.Timeouts}
}

func (k Key) get(d Dim) string {
	switch d {
	case DimUser:
		return k.User
	case DimService:
		return k.Service
	case DimProvider:
		return k.Provider
	case DimTool:
		return k.Tool
	}
	return ""
}

// rows is what a report lists: its rows, or the total alone when it
// groups by nothing.
func (r *Report) rows() []Row {
	if len(r.By) == 0 {
		return []Row{r.Total}
	}
	return r.Rows
}

// WriteTable writes the report as an aligned text table with a total line.
func (r *Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	var head []string
	for _, d := range r.By {
		head = append(head, strings.ToUpper(string(d)))
	}
	head = append(head, "CALLS", "OK", "TOOL ERR", "ERRORS", "DENIED", "TIMEOUTS", "P50", "P95", "REQ BYTES", "RESP BYTES")
	line := func(cells []string) {
		fmt.Fprint(tw, strings.Join(cells, "\t")+"\t\n")
	}
	line(head)
	cells := func(row Row, keys []string) []string {
		out := append([]string(nil), keys...)
		for _, v := range row.values() {
			out = append(out, strconv.FormatInt(v, 10))
		}
		return append(out, Latency(row.P50), Latency(row.P95), strconv.FormatInt(row.ReqBytes, 10), strconv.FormatInt(row.RespBytes, 10))
	}
	if len(r.By) > 0 {
		for _, row := range r.Rows {
			var keys []string
			for _, d := range r.By {
				keys = append(keys, orDash(row.get(d)))
			}
			line(cells(row, keys))
		}
	}
	keys := make([]string, len(r.By))
	if len(keys) > 0 {
		keys[0] = "TOTAL"
		for i := 1; i < len(keys); i++ {
			keys[i] = ""
		}
	}
	line(cells(r.Total, keys))
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "%s\n", r.period())
	return err
}

// period describes the report's time bounds.
func (r *Report) period() string {
	f := func(t time.Time, none string) string {
		if t.IsZero() {
			return none
		}
		return t.UTC().Format(time.RFC3339)
	}
	return "period: " + f(r.Since, "the first record") + " to " + f(r.Until, "the last record")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// Latency formats a percentile for a table: three significant digits.
func Latency(d time.Duration) string {
	switch {
	case d == 0:
		return "-"
	case d < time.Millisecond:
		return strconv.FormatInt(d.Microseconds(), 10) + "µs"
	case d < time.Second:
		return strconv.FormatFloat(float64(d.Microseconds())/1000, 'g', 3, 64) + "ms"
	}
	return strconv.FormatFloat(d.Seconds(), 'g', 3, 64) + "s"
}

// ms is a duration in milliseconds with microsecond precision.
func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// WriteJSON writes the report as one JSON object: since, until (null when
// unbounded), by, rows (each with the grouped dimensions, the counts,
// p50_ms and p95_ms) and total.
func (r *Report) WriteJSON(w io.Writer) error {
	var b bytes.Buffer
	b.WriteString(`{"since":`)
	writeTime(&b, r.Since)
	b.WriteString(`,"until":`)
	writeTime(&b, r.Until)
	b.WriteString(`,"by":`)
	by := make([]string, len(r.By))
	for i, d := range r.By {
		by[i] = string(d)
	}
	writeValue(&b, by)
	b.WriteString(`,"rows":[`)
	for i, row := range r.rows() {
		if i > 0 {
			b.WriteByte(',')
		}
		r.writeRow(&b, row, r.By)
	}
	b.WriteString(`],"total":`)
	r.writeRow(&b, r.Total, nil)
	b.WriteString("}\n")
	_, err := w.Write(b.Bytes())
	return err
}

func (r *Report) writeRow(b *bytes.Buffer, row Row, by []Dim) {
	b.WriteByte('{')
	for _, d := range by {
		writeValue(b, string(d))
		b.WriteByte(':')
		writeValue(b, row.get(d))
		b.WriteByte(',')
	}
	for i, name := range counterNames {
		fmt.Fprintf(b, "%q:%d,", name, row.values()[i])
	}
	fmt.Fprintf(b, `"p50_ms":%s,"p95_ms":%s,"req_bytes":%d,"resp_bytes":%d}`,
		strconv.FormatFloat(ms(row.P50), 'f', -1, 64), strconv.FormatFloat(ms(row.P95), 'f', -1, 64), row.ReqBytes, row.RespBytes)
}

func writeTime(b *bytes.Buffer, t time.Time) {
	if t.IsZero() {
		b.WriteString("null")
		return
	}
	writeValue(b, t.UTC().Format(time.RFC3339Nano))
}

func writeValue(b *bytes.Buffer, v any) {
	enc, _ := json.Marshal(v)
	b.Write(enc)
}

// WriteCSV writes the report as CSV: a header line, then one line per row
// (the total alone when the report groups by nothing).
func (r *Report) WriteCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	var head []string
	for _, d := range r.By {
		head = append(head, string(d))
	}
	head = append(head, counterNames...)
	head = append(head, "p50_ms", "p95_ms", "req_bytes", "resp_bytes")
	if err := cw.Write(head); err != nil {
		return err
	}
	for _, row := range r.rows() {
		var rec []string
		for _, d := range r.By {
			rec = append(rec, csvSafe(row.get(d)))
		}
		for _, v := range row.values() {
			rec = append(rec, strconv.FormatInt(v, 10))
		}
		rec = append(rec, strconv.FormatFloat(ms(row.P50), 'f', -1, 64), strconv.FormatFloat(ms(row.P95), 'f', -1, 64),
			strconv.FormatInt(row.ReqBytes, 10), strconv.FormatInt(row.RespBytes, 10))
		if err := cw.Write(rec); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// csvSafe keeps a name from being read as a formula by a spreadsheet: one
// that starts with =, +, -, @, a tab or a carriage return gets a leading
// apostrophe (the OWASP advice for CSV injection).
func csvSafe(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}
