package transport

import (
	"bytes"
	"fmt"
	"io"
	"sync"
)

// bodies recycles the buffers answers are read into. A cycle reads one
// listing page after another; growing a fresh buffer for each was the
// largest source of garbage in a daemon cycle.
var bodies = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// maxPooledBody: a buffer grown by an unusually large answer is left to
// the garbage collector rather than kept.
const maxPooledBody = 1 << 20

// ReadBody reads r, at most limit bytes, into a recycled buffer and hands
// them to use, which must not keep them (decoding copies what it keeps).
func ReadBody(r io.Reader, limit int64, use func(body []byte) error) error {
	buf := bodies.Get().(*bytes.Buffer)
	buf.Reset()
	defer func() {
		if buf.Cap() <= maxPooledBody {
			bodies.Put(buf)
		}
	}()
	n, err := buf.ReadFrom(io.LimitReader(r, limit+1))
	if err != nil {
		return fmt.Errorf("reading the answer: %w", err)
	}
	if n > limit {
		return fmt.Errorf("the answer exceeds %d bytes", limit)
	}
	return use(buf.Bytes())
}
