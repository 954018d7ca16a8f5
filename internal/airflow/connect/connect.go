// Package connect picks the Airflow REST API version and returns the
// matching airflow.Client after the server has answered its version.
package connect

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/kpo-reaper/kpo-reaper/internal/airflow"
	"github.com/kpo-reaper/kpo-reaper/internal/airflow/transport"
	v1 "github.com/kpo-reaper/kpo-reaper/internal/airflow/v1"
	v2 "github.com/kpo-reaper/kpo-reaper/internal/airflow/v2"
)

// Connect returns the client for apiVersion ("auto", "" meaning auto, "v1"
// or "v2") and the server's Airflow version.
//
// auto asks GET /api/v2/version and, when that is a 404 of any kind (an
// Airflow 2 webserver answers its HTML 404 page), GET /api/v1/version. Both
// endpoints are public in Airflow, but hc sends its credentials anyway,
// which also surfaces an auth misconfiguration at start-up rather than in
// the first cycle. An explicit version is checked the same way, so a
// mismatch fails here with a message instead of as 404s later.
func Connect(ctx context.Context, baseURL, apiVersion string, hc *http.Client) (airflow.Client, string, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, "", fmt.Errorf("airflow.url %q is not an http(s) URL", baseURL)
	}
	shown := redacted(u)
	if p := strings.TrimRight(u.Path, "/"); strings.HasSuffix(p, "/api/v1") || strings.HasSuffix(p, "/api/v2") {
		return nil, "", fmt.Errorf("airflow.url %s: remove the %s suffix, give the webserver's base URL", shown, p[len(p)-7:])
	}
	base := strings.TrimRight(baseURL, "/")

	c1 := v1.New(base, hc)
	c2, err := v2.New(base, hc)
	if err != nil {
		return nil, "", err
	}

	switch apiVersion {
	case "", "auto":
		ver, err2 := c2.ServerVersion(ctx)
		if err2 == nil {
			return c2, ver, nil
		}
		if !transport.IsStatus(err2, http.StatusNotFound) {
			return nil, "", fmt.Errorf("airflow.url %s: asking the Airflow 3 API for its version: %w", shown, err2)
		}
		ver, err1 := c1.ServerVersion(ctx)
		if err1 == nil {
			return c1, ver, nil
		}
		if transport.IsStatus(err1, http.StatusNotFound) {
			return nil, "", fmt.Errorf("airflow.url %s answered 404 for both /api/v2/version and /api/v1/version: is the URL the webserver's base URL without /api/v1? (%w; %w)", shown, err2, err1)
		}
		return nil, "", fmt.Errorf("airflow.url %s: /api/v2/version answered 404, and asking the Airflow 2 API for its version failed: %w", shown, err1)
	case "v1":
		ver, err := c1.ServerVersion(ctx)
		if err != nil {
			if transport.IsStatus(err, http.StatusNotFound) {
				return nil, "", fmt.Errorf("airflow.apiVersion is v1 but %s answered 404 for /api/v1/version: Airflow 3 has only /api/v2 (set airflow.apiVersion to v2 or auto), or airflow.url is not the webserver's base URL: %w", shown, err)
			}
			return nil, "", fmt.Errorf("airflow.url %s: asking the Airflow 2 API for its version: %w", shown, err)
		}
		return c1, ver, nil
	case "v2":
		ver, err := c2.ServerVersion(ctx)
		if err != nil {
			if transport.IsStatus(err, http.StatusNotFound) {
				return nil, "", fmt.Errorf("airflow.apiVersion is v2 but %s answered 404 for /api/v2/version: Airflow 2 has only /api/v1 (set airflow.apiVersion to v1 or auto), or airflow.url is not the API server's base URL: %w", shown, err)
			}
			return nil, "", fmt.Errorf("airflow.url %s: asking the Airflow 3 API for its version: %w", shown, err)
		}
		return c2, ver, nil
	default:
		return nil, "", fmt.Errorf("airflow.apiVersion %q is not one of auto, v1, v2", apiVersion)
	}
}

func redacted(u *url.URL) string {
	c := *u
	c.User = nil
	c.RawQuery, c.Fragment = "", ""
	return c.String()
}
