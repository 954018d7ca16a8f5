package transport

import (
	"errors"
	"strings"
	"testing"
)

func TestReadBodyRefusesAnAnswerAboveTheLimit(t *testing.T) {
	called := false
	err := ReadBody(strings.NewReader(strings.Repeat("x", 11)), 10, func([]byte) error { called = true; return nil })
	if err == nil || called || !strings.Contains(err.Error(), "exceeds 10 bytes") {
		t.Fatalf("called %v, err %v", called, err)
	}
}

func TestReadBodyHandsOverTheWholeAnswerAndItsError(t *testing.T) {
	for _, body := range []string{"", `{"a":1}`, strings.Repeat("y", 10)} {
		var got string
		want := errors.New("use failed")
		err := ReadBody(strings.NewReader(body), 10, func(b []byte) error { got = string(b); return want })
		if got != body || !errors.Is(err, want) {
			t.Fatalf("body %q: got %q, err %v", body, got, err)
		}
	}
}
