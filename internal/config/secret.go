package config

import (
	"fmt"
	"log/slog"
	"reflect"
	"strconv"

	"github.com/go-viper/mapstructure/v2"
)

// redacted is what a set Secret shows wherever it goes; an unset one shows
// nothing, so a missing secret is still diagnosable in the start-up line.
const redacted = "<redacted>"

// Secret is a configuration value that must not be shown: fmt (every verb),
// encoding/json, encoding.TextMarshaler and slog all give "<redacted>", or
// "" when it is unset. Reveal is the one way to the value; only the code
// that hands it to the Airflow transport calls it.
type Secret struct{ value string }

// NewSecret wraps a value, for tests and callers that build a Config in
// code.
func NewSecret(value string) Secret { return Secret{value: value} }

// Reveal returns the value, to send it to Airflow and nowhere else.
func (s Secret) Reveal() string { return s.value }

// IsSet reports whether the value is non-empty, without showing it.
func (s Secret) IsSet() bool { return s.value != "" }

func (s Secret) shown() string {
	if s.value == "" {
		return ""
	}
	return redacted
}

// String shows "<redacted>", or "" when unset.
func (s Secret) String() string { return s.shown() }

// GoString is String: %#v shows no value either.
func (s Secret) GoString() string { return s.shown() }

// Format gives the same for every verb; %q quotes it.
func (s Secret) Format(f fmt.State, verb rune) {
	if verb == 'q' {
		_, _ = f.Write([]byte(strconv.Quote(s.shown())))
		return
	}
	_, _ = f.Write([]byte(s.shown()))
}

// MarshalJSON shows "<redacted>", or "" when unset.
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(strconv.Quote(s.shown())), nil }

// MarshalText shows "<redacted>", or "" when unset.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.shown()), nil }

// LogValue shows "<redacted>", or "" when unset.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.shown()) }

// UnmarshalMapstructure decodes a Secret from what the file, the
// environment or a flag gives, with the weak conversions every other string
// key gets (a YAML number is its digits); a value that is no string is
// refused as it is for a string key, without showing it.
func (s *Secret) UnmarshalMapstructure(input any) error {
	var v string
	if err := mapstructure.WeakDecode(input, &v); err != nil {
		return &mapstructure.UnconvertibleTypeError{Expected: reflect.ValueOf(v), Value: input}
	}
	s.value = v
	return nil
}
