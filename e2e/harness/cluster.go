package harness

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
)

// AdminUser is the user name of the admin token, which is in group
// system:masters and so bypasses RBAC.
const AdminUser = "kpo-e2e-admin"

// Options configure Start. The zero value is usable.
type Options struct {
	// BinDir holds etcd and kube-apiserver; empty means BinDir().
	BinDir string
	// AuditLog turns on the apiserver's audit log (pods at level Request,
	// so delete options are visible; everything else at Metadata), read
	// back with AuditEvents.
	AuditLog bool
	// StartTimeout bounds the wait for etcd and the apiserver to become
	// ready; zero means 90s. The usual time is a few seconds, but a loaded
	// CI machine running the race detector can be much slower.
	StartTimeout time.Duration
	// ExtraAPIServerArgs are appended after the harness's own flags.
	// Scalar flags are last-wins, so they can override a default; list
	// flags (e.g. --disable-admission-plugins) are appended to instead.
	ExtraAPIServerArgs []string
	// KeepDir leaves the working directory (logs, etcd data, kubeconfigs,
	// audit log) after Stop, for post-mortem debugging.
	KeepDir bool
}

// Cluster is a running etcd + kube-apiserver pair. Use Stop to end it.
type Cluster struct {
	dir        string
	keepDir    bool
	serverURL  string
	caPEM      []byte
	adminToken string
	auditPath  string       // empty unless Options.AuditLog
	markers    atomic.Int64 // names SyncAudit's marker requests

	etcd      *process
	apiserver *process

	restConfig *rest.Config
	admin      kubernetes.Interface
	dynamic    dynamic.Interface
	mapper     *restmapper.DeferredDiscoveryRESTMapper
	adminKC    string

	stopOnce sync.Once
	stopErr  error
}

// Start runs etcd and kube-apiserver on free loopback ports in a new
// temporary directory and returns once the apiserver's /readyz is ok. On
// failure nothing is left running and the error carries the tails of both
// processes' logs. ctx bounds only the start; the processes run until Stop.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	if opts.BinDir == "" {
		dir, err := BinDir()
		if err != nil {
			return nil, err
		}
		opts.BinDir = dir
	} else if err := checkBinaries(opts.BinDir); err != nil {
		return nil, err
	}
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = 90 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, opts.StartTimeout)
	defer cancel()

	// Free ports are found by binding and releasing them, so another
	// process can take one in between. That shows up as "address already
	// in use" in a log, and a fresh set of ports fixes it.
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		var c *Cluster
		c, err = start(ctx, opts)
		if err == nil {
			return c, nil
		}
		if !strings.Contains(err.Error(), "address already in use") || ctx.Err() != nil {
			break
		}
	}
	return nil, err
}

func start(ctx context.Context, opts Options) (_ *Cluster, err error) {
	dir, err := os.MkdirTemp("", "kpo-e2e-")
	if err != nil {
		return nil, err
	}
	c := &Cluster{dir: dir, keepDir: opts.KeepDir}
	defer func() {
		if err != nil {
			_ = c.Stop()
		}
	}()

	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	etcdURL := "http://127.0.0.1:" + strconv.Itoa(ports[0])
	peerURL := "http://127.0.0.1:" + strconv.Itoa(ports[1])
	c.serverURL = "https://127.0.0.1:" + strconv.Itoa(ports[2])

	certs, err := writePKI(dir)
	if err != nil {
		return nil, fmt.Errorf("generating certificates: %w", err)
	}
	c.caPEM = certs.caPEM
	if c.adminToken, err = randomToken(); err != nil {
		return nil, err
	}
	tokenFile := filepath.Join(dir, "tokens.csv")
	// token,user,uid,"groups"
	line := fmt.Sprintf("%s,%s,%s,\"system:masters\"\n", c.adminToken, AdminUser, AdminUser)
	if err := os.WriteFile(tokenFile, []byte(line), 0o600); err != nil {
		return nil, err
	}

	c.etcd, err = startProcess("etcd", filepath.Join(dir, "etcd.log"), filepath.Join(opts.BinDir, EtcdBinary),
		"--name", "kpo-e2e",
		"--data-dir", filepath.Join(dir, "etcd-data"),
		"--listen-client-urls", etcdURL,
		"--advertise-client-urls", etcdURL,
		// The peer flags must be explicit even for one member, or etcd
		// binds the default 2380 and two clusters cannot run at once.
		"--listen-peer-urls", peerURL,
		"--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", "kpo-e2e="+peerURL,
		// The data is thrown away after the test, so durability buys
		// nothing and fsync is most of etcd's write latency.
		"--unsafe-no-fsync",
		"--log-level", "warn",
	)
	if err != nil {
		return nil, err
	}
	plain := &http.Client{Timeout: 2 * time.Second}
	if err := c.waitFor(ctx, c.etcd, plain, etcdURL+"/health", ""); err != nil {
		return nil, err
	}

	args := []string{
		"--etcd-servers", etcdURL,
		"--bind-address", "127.0.0.1",
		"--advertise-address", "127.0.0.1",
		"--secure-port", strconv.Itoa(ports[2]),
		"--tls-cert-file", certs.servingCert,
		"--tls-private-key-file", certs.servingKey,
		// Unused with the certificate above, but keeps the default
		// /var/run/kubernetes from being touched.
		"--cert-dir", filepath.Join(dir, "certs"),
		"--service-account-issuer", "https://kubernetes.default.svc",
		"--service-account-key-file", certs.saPublicKey,
		"--service-account-signing-key-file", certs.saPrivateKey,
		"--token-auth-file", tokenFile,
		"--authorization-mode", "RBAC",
		"--service-cluster-ip-range", "10.0.0.0/24",
		// No controller-manager creates the "default" ServiceAccount, and
		// without this every pod create would be rejected for lack of it.
		"--disable-admission-plugins", "ServiceAccount",
		// The lease reconciler would try to publish 127.0.0.1 as the
		// kubernetes Service endpoint, which validation rejects; upstream's
		// own test server turns it off for loopback the same way.
		"--endpoint-reconciler-type", "none",
		"--profiling=false",
	}
	if opts.AuditLog {
		policy := filepath.Join(dir, "audit-policy.yaml")
		if err := os.WriteFile(policy, []byte(auditPolicy), 0o600); err != nil {
			return nil, err
		}
		c.auditPath = filepath.Join(dir, "audit.log")
		args = append(args,
			"--audit-policy-file", policy,
			"--audit-log-path", c.auditPath,
			"--audit-log-format", "json",
			// Blocking (the log backend's default, pinned here) writes
			// each event as its request completes, not in a batch up to
			// a second later. A client can still get its response a
			// moment before the event is written: see WaitForAuditEvent.
			"--audit-log-mode", "blocking",
		)
	}
	args = append(args, opts.ExtraAPIServerArgs...)
	c.apiserver, err = startProcess("kube-apiserver", filepath.Join(dir, "kube-apiserver.log"),
		filepath.Join(opts.BinDir, APIServerBinary), args...)
	if err != nil {
		return nil, err
	}

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(c.caPEM)
	secure := &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
	}
	defer secure.CloseIdleConnections()
	if err := c.waitFor(ctx, c.apiserver, secure, c.serverURL+"/readyz", c.adminToken); err != nil {
		return nil, err
	}

	c.restConfig = &rest.Config{
		Host:            c.serverURL,
		BearerToken:     c.adminToken,
		TLSClientConfig: rest.TLSClientConfig{CAData: c.caPEM},
		// client-go's defaults (5 QPS) would make the tests slower than the
		// server; this server has no other users to protect.
		QPS:   200,
		Burst: 400,
	}
	if c.admin, err = kubernetes.NewForConfig(c.restConfig); err != nil {
		return nil, err
	}
	if c.dynamic, err = dynamic.NewForConfig(c.restConfig); err != nil {
		return nil, err
	}
	c.mapper = restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(c.admin.Discovery()))
	c.adminKC = filepath.Join(dir, "admin.kubeconfig")
	if err := writeKubeconfig(c.adminKC, c.serverURL, c.caPEM, AdminUser, c.adminToken); err != nil {
		return nil, err
	}
	return c, nil
}

// waitFor polls url until it answers 200, failing early if proc exits.
func (c *Cluster) waitFor(ctx context.Context, proc *process, client *http.Client, url, token string) error {
	var last string
	err := wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		if proc.Exited() {
			return false, fmt.Errorf("%s exited during start: %w", proc.name, proc.exitErr())
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return false, err
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		if err != nil {
			last = err.Error()
			return false, nil
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			return true, nil
		}
		last = fmt.Sprintf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(body)))
		return false, nil
	})
	if err == nil {
		return nil
	}
	if wait.Interrupted(err) {
		err = fmt.Errorf("%s not ready at %s before the start deadline (last answer: %s)", proc.name, url, last)
	}
	return fmt.Errorf("%w\n%s", err, c.logTails())
}

func (c *Cluster) logTails() string {
	var parts []string
	for _, p := range []*process{c.etcd, c.apiserver} {
		if p != nil {
			parts = append(parts, p.tail(40))
		}
	}
	return strings.Join(parts, "\n")
}

// freePorts reserves n distinct loopback ports by holding all listeners
// open until every port is known, then releases them for the children.
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// Stop ends the apiserver and then etcd (only the processes this Cluster
// started) and removes the working directory unless Options.KeepDir. It is
// safe to call more than once and from a deferred call after a failed
// Start. It returns an error if either process had died before Stop, since
// the test then ran against a broken cluster.
func (c *Cluster) Stop() error {
	c.stopOnce.Do(func() {
		var errs []error
		// The apiserver first, so it does not spend its shutdown retrying
		// a vanished etcd.
		for _, p := range []*process{c.apiserver, c.etcd} {
			if p != nil {
				errs = append(errs, p.stop(10*time.Second))
			}
		}
		if !c.keepDir {
			errs = append(errs, os.RemoveAll(c.dir))
		}
		c.stopErr = errors.Join(errs...)
	})
	return c.stopErr
}

// Dir is the cluster's working directory: logs, etcd data, kubeconfigs and
// the audit log. It is removed by Stop unless Options.KeepDir.
func (c *Cluster) Dir() string { return c.dir }

// PIDs returns the process ids of etcd and kube-apiserver, so a test can
// check they are gone after Stop.
func (c *Cluster) PIDs() []int {
	var pids []int
	for _, p := range []*process{c.etcd, c.apiserver} {
		if p != nil {
			pids = append(pids, p.PID())
		}
	}
	return pids
}

// LogTails returns the last lines of both processes' logs, for a failing
// test to print.
func (c *Cluster) LogTails() string { return c.logTails() }

// ServerURL is the apiserver's https URL on 127.0.0.1.
func (c *Cluster) ServerURL() string { return c.serverURL }

// CAData is the PEM CA that signed the apiserver's serving certificate.
func (c *Cluster) CAData() []byte { return append([]byte(nil), c.caPEM...) }

// AdminKubeconfig is the path of a kubeconfig whose token is in group
// system:masters.
func (c *Cluster) AdminKubeconfig() string { return c.adminKC }

// AdminRESTConfig returns a copy of the admin client configuration.
func (c *Cluster) AdminRESTConfig() *rest.Config { return rest.CopyConfig(c.restConfig) }

// Admin is a clientset authenticated as AdminUser.
func (c *Cluster) Admin() kubernetes.Interface { return c.admin }

// Dynamic is a dynamic client authenticated as AdminUser.
func (c *Cluster) Dynamic() dynamic.Interface { return c.dynamic }
