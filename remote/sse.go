package remote

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

// errEventTooLong is returned by sseReader.next for an event whose data
// exceeds the reader's limit.
var errEventTooLong = errors.New("server-sent event exceeds the message size limit")

// sseEvent is one server-sent event.
type sseEvent struct {
	name string // "" means "message"
	data []byte // the data lines joined with '\n'; valid until the next call
}

// sseReader reads the text/event-stream format (WHATWG HTML, "Server-sent
// events"): lines of field:value, an event dispatched at each blank line,
// comments (lines starting with ':') ignored. id and retry fields are read
// and ignored: streams are not resumed.
type sseReader struct {
	br   *bufio.Reader
	max  int
	data []byte
	name string
	line []byte
}

func newSSEReader(r io.Reader, max int) *sseReader {
	return &sseReader{br: bufio.NewReaderSize(r, 32<<10), max: max}
}

// next returns the next event with data. It returns io.EOF when the stream
// ends (an event not terminated by a blank line is dropped, as the format
// says).
func (s *sseReader) next() (sseEvent, error) {
	s.data = s.data[:0]
	s.name = ""
	hasData := false
	for {
		line, err := s.readLine()
		if err != nil {
			return sseEvent{}, err
		}
		if len(line) == 0 {
			if !hasData {
				s.name = ""
				continue
			}
			return sseEvent{name: s.name, data: s.data}, nil
		}
		if line[0] == ':' {
			continue
		}
		field, value, found := bytes.Cut(line, []byte{':'})
		if found && len(value) > 0 && value[0] == ' ' {
			value = value[1:]
		}
		switch string(field) {
		case "data":
			if hasData {
				s.data = append(s.data, '\n')
			}
			if len(s.data)+len(value) > s.max {
				return sseEvent{}, errEventTooLong
			}
			s.data = append(s.data, value...)
			hasData = true
		case "event":
			s.name = string(value)
		}
	}
}

// readLine returns one line without its terminator (CRLF or LF), at most
// max+64 bytes long. (A lone CR, which the format also allows, is not
// treated as a line end; no MCP server is known to send one.)
func (s *sseReader) readLine() ([]byte, error) {
	s.line = s.line[:0]
	for {
		frag, err := s.br.ReadSlice('\n')
		if len(s.line)+len(frag) > s.max+64 {
			return nil, errEventTooLong
		}
		s.line = append(s.line, frag...)
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err != nil {
			if errors.Is(err, io.EOF) && len(s.line) > 0 {
				break // a last line without its newline
			}
			return nil, err
		}
		break
	}
	line := s.line
	line = bytes.TrimSuffix(line, []byte{'\n'})
	line = bytes.TrimSuffix(line, []byte{'\r'})
	return line, nil
}
