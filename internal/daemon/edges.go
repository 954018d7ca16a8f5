package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/kpo-reaper/kpo-reaper/internal/airflow"
	"github.com/kpo-reaper/kpo-reaper/internal/airflow/authtype"
	"github.com/kpo-reaper/kpo-reaper/internal/airflow/connect"
	"github.com/kpo-reaper/kpo-reaper/internal/airflow/mwaa"
	"github.com/kpo-reaper/kpo-reaper/internal/airflow/transport"
	"github.com/kpo-reaper/kpo-reaper/internal/config"
	"github.com/kpo-reaper/kpo-reaper/internal/decision"
	"github.com/kpo-reaper/kpo-reaper/internal/deleter"
	"github.com/kpo-reaper/kpo-reaper/internal/kube"
	"github.com/kpo-reaper/kpo-reaper/internal/reaper"
	"github.com/kpo-reaper/kpo-reaper/internal/resolve"
)

// Self is the reaper's own pod, from the downward API variables POD_NAME,
// POD_NAMESPACE and POD_UID; empty outside a pod. It is read once, here,
// and passed to what names the replica: the Kubernetes user agent, the
// leader election and the Events.
type Self struct{ Name, Namespace, UID string }

// SelfFromEnv reads Self from the environment.
func SelfFromEnv() Self {
	return Self{Name: os.Getenv("POD_NAME"), Namespace: os.Getenv("POD_NAMESPACE"), UID: os.Getenv("POD_UID")}
}

// Edges are the clients of Airflow and Kubernetes, and the pod they speak
// for. Build makes them without a network call; Connect then asks Airflow
// its version, which picks the API client.
type Edges struct {
	Airflow airflow.Client
	Kube    kube.Client
	Self    Self

	calls      atomic.Int64
	http       *http.Client
	baseURL    string
	shown      string
	pageSize   int
	apiVersion string
}

// APICalls counts the Airflow requests answered so far.
func (e *Edges) APICalls() int64 { return e.calls.Load() }

// Shown names the Airflow in logs: its URL, or the MWAA environment.
func (e *Edges) Shown() string { return e.shown }

// transportAuth hands the credentials to the Airflow transport: the one
// place their values leave the configuration.
func transportAuth(a config.Airflow) transport.Auth {
	au := a.Auth
	return transport.Auth{
		Type: au.Type, Username: au.Username, Password: au.Password.Reveal(),
		Token: au.Token.Reveal(), TokenFile: au.TokenFile,
		ClientID: au.ClientID, ClientSecret: au.ClientSecret.Reveal(),
		CredentialsFile: au.CredentialsFile, Scopes: au.Scopes,
		BaseURL: a.URL,
	}
}

// Build makes the Airflow transport and the Kubernetes client from the
// configuration. Nothing is asked over the network, so every error is the
// configuration's (a ConfigError): an unreadable CA or kubeconfig file, a
// missing AWS region.
func Build(ctx context.Context, c *config.Config, self Self, log *slog.Logger, observe func(string, string, int, time.Duration)) (*Edges, error) {
	e := &Edges{Self: self, apiVersion: c.Airflow.APIVersion}
	a := c.Airflow
	e.baseURL, e.shown, e.pageSize = a.URL, a.URL, a.PageSize
	auth := transportAuth(a)
	var base http.RoundTripper
	if a.Auth.Type == authtype.MWAA {
		var err error
		base, err = mwaa.NewTransport(ctx, mwaa.Options{Environment: a.MWAA.Environment, Region: a.MWAA.Region, Endpoint: a.MWAA.Endpoint, Logger: log})
		if err != nil {
			return nil, ConfigError{err}
		}
		// SigV4 inside the SDK authenticates; the HTTP layer adds nothing.
		auth = transport.Auth{Type: authtype.None}
		e.baseURL, e.shown = mwaa.BaseURL, "mwaa:"+a.MWAA.Region+"/"+a.MWAA.Environment
		if e.pageSize == 0 {
			e.pageSize = mwaa.PageSize
		}
	}
	hc, err := transport.New(transport.Options{
		Timeout:    a.Timeout,
		MaxRetries: a.MaxRetries,
		Logger:     log,
		Auth:       auth,
		TLS:        transport.TLS{CAFile: a.TLS.CAFile, CertFile: a.TLS.CertFile, KeyFile: a.TLS.KeyFile, InsecureSkipVerify: a.TLS.InsecureSkipVerify},
		Base:       base,
		Observer: func(endpoint, method string, status int, d time.Duration) {
			e.calls.Add(1)
			if observe != nil {
				observe(endpoint, method, status, d)
			}
		},
	})
	if err != nil {
		return nil, ConfigError{err}
	}
	e.http = hc

	restCfg, err := kube.Config(c.Kubernetes.Kubeconfig, c.Kubernetes.Context, self.Name)
	if err != nil {
		return nil, ConfigError{err}
	}
	if e.Kube, err = kube.New(restCfg); err != nil {
		return nil, ConfigError{fmt.Errorf("kubernetes client: %w", err)}
	}
	return e, nil
}

// Connect asks Airflow its version, which picks the API client; a wrong
// URL or API version fails here with a line that names the fix.
func (e *Edges) Connect(ctx context.Context, log *slog.Logger) error {
	af, version, err := connect.Connect(ctx, connect.Options{BaseURL: e.baseURL, Shown: e.shown, APIVersion: e.apiVersion, HTTPClient: e.http, PageSize: e.pageSize})
	if err != nil {
		return fmt.Errorf("airflow: %w", err)
	}
	e.Airflow = af
	log.Info("connected to Airflow", "url", e.shown, "api", af.APIVersion(), "version", version)
	return nil
}

// NewReaper wires the decision to the edges. Dry run swaps in the Deleter
// that sends nothing.
func NewReaper(c *config.Config, e *Edges, pods reaper.PodSource, dryRun bool, log *slog.Logger) *reaper.Reaper {
	var d reaper.Writer = deleter.Force{Client: e.Kube}
	if dryRun {
		d = &deleter.DryRunDeleter{}
		log.Info("dry run: nothing will be deleted or annotated; set reaper.dryRun: false (or --dry-run=false) to delete")
	}
	return &reaper.Reaper{
		Pods:     pods,
		Resolver: &resolve.Resolver{Client: e.Airflow},
		Deleter:  d,
		Policy: decision.Policy{
			MinPodAge:           c.Reaper.MinPodAge,
			TerminalGracePeriod: c.Reaper.TerminalGracePeriod,
			OrphanMinAge:        c.Reaper.OrphanMinAge,
			ReapOrphans:         c.Reaper.ReapOrphans,
		},
		Plan: reaper.PlanPolicy{
			Confirmations: c.Reaper.Confirmations,
			Spacing:       c.Reaper.EffectiveConfirmationSpacing(),
			MaxDeletes:    c.Reaper.MaxDeletesPerCycle,
		},
		DryRun:   dryRun,
		Log:      log,
		Now:      time.Now,
		APICalls: e.APICalls,
	}
}

// ListPods is the paginated List, for --once and plan.
func ListPods(c *config.Config, e *Edges) reaper.PodSource {
	return &kube.PodLister{Client: e.Kube, Namespaces: c.Kubernetes.Namespaces, Selector: kube.Selector(c.Kubernetes.LabelSelector)}
}
