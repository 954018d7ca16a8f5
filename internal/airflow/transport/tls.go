package transport

import (
	"errors"
	"log/slog"
	"net/http"
)

// configureTLS applies airflow.tls to the network transport.
func configureTLS(t *http.Transport, c TLS, log *slog.Logger) error {
	if c == (TLS{}) {
		return nil
	}
	return errors.New("airflow.tls is not implemented yet")
}
