package cli

import (
	"context"
	"errors"
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

// ErrStartup wraps the reasons `run` or `plan` could not start: Airflow not
// reached, no Kubernetes client, a failed start-up self-check. No cycle ran,
// so it is not reaper.ErrCycleFailed, but it exits as one does
// (ExitCycleFailed) and reads as one always has: nothing was deleted.
var ErrStartup = errors.New(reaper.ErrCycleFailed.Error())

// Self is the reaper's own pod, from the downward API variables POD_NAME,
// POD_NAMESPACE and POD_UID; empty outside a pod. It is read once, here,
// and passed to what names the replica: the Kubernetes user agent, the
// leader election and the Events.
type Self struct{ Name, Namespace, UID string }

func selfFromEnv() Self {
	return Self{Name: os.Getenv("POD_NAME"), Namespace: os.Getenv("POD_NAMESPACE"), UID: os.Getenv("POD_UID")}
}

// edges are the connected clients, and the pod they speak for.
type edges struct {
	airflow  airflow.Client
	kube     kube.Client
	apiCalls func() int64
	self     Self
}

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

// connectEdges connects to Airflow and builds the Kubernetes client.
// Connecting to Airflow asks its version, so a wrong URL or API version
// fails here with a line that names the fix.
func connectEdges(ctx context.Context, c *config.Config, log *slog.Logger, observe func(string, string, int, time.Duration)) (*edges, error) {
	var calls atomic.Int64
	self := selfFromEnv()
	a := c.Airflow
	baseURL, shown, pageSize := a.URL, a.URL, a.PageSize
	auth := transportAuth(a)
	var base http.RoundTripper
	if a.Auth.Type == authtype.MWAA {
		var err error
		base, err = mwaa.NewTransport(ctx, mwaa.Options{Environment: a.MWAA.Environment, Region: a.MWAA.Region, Endpoint: a.MWAA.Endpoint, Logger: log})
		if err != nil {
			return nil, usageError{err}
		}
		// SigV4 inside the SDK authenticates; the HTTP layer adds nothing.
		auth = transport.Auth{Type: authtype.None}
		baseURL, shown = mwaa.BaseURL, "mwaa:"+a.MWAA.Region+"/"+a.MWAA.Environment
		if pageSize == 0 {
			pageSize = mwaa.PageSize
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
			calls.Add(1)
			if observe != nil {
				observe(endpoint, method, status, d)
			}
		},
	})
	if err != nil {
		return nil, usageError{err}
	}
	af, version, err := connect.Connect(ctx, connect.Options{BaseURL: baseURL, Shown: shown, APIVersion: a.APIVersion, HTTPClient: hc, PageSize: pageSize})
	if err != nil {
		return nil, fmt.Errorf("%w: airflow: %w", ErrStartup, err)
	}
	log.Info("connected to Airflow", "url", shown, "api", af.APIVersion(), "version", version)

	restCfg, err := kube.Config(c.Kubernetes.Kubeconfig, self.Name)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrStartup, err)
	}
	cs, err := kube.New(restCfg)
	if err != nil {
		return nil, fmt.Errorf("%w: kubernetes client: %w", ErrStartup, err)
	}
	return &edges{airflow: af, kube: cs, apiCalls: calls.Load, self: self}, nil
}

// newReaper wires the decision to the edges. Dry run swaps in the Deleter
// that sends nothing.
func newReaper(c *config.Config, e *edges, pods reaper.PodSource, dryRun bool, log *slog.Logger) *reaper.Reaper {
	var d reaper.Writer = deleter.Force{Client: e.kube}
	if dryRun {
		d = &deleter.DryRunDeleter{}
		log.Info("dry run: nothing will be deleted or annotated; set reaper.dryRun: false (or --dry-run=false) to delete")
	}
	return &reaper.Reaper{
		Pods:     pods,
		Resolver: &resolve.Resolver{Client: e.airflow},
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
		APICalls: e.apiCalls,
	}
}

// listPods is the paginated List, for --once and plan.
func listPods(c *config.Config, e *edges) reaper.PodSource {
	return &kube.PodLister{Client: e.kube, Namespaces: c.Kubernetes.Namespaces, Selector: kube.Selector(c.Kubernetes.LabelSelector)}
}
