package harness

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
)

// auditPolicy records pods at level Request so a test can see the delete
// options a client sent (grace period, preconditions, dry-run), and the
// rest at Metadata. Only the final stage is kept, so one request is one
// event. The apiserver's own loopback traffic and health probes are noise
// that no test asks about.
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived", "ResponseStarted"]
rules:
- level: None
  users: ["system:apiserver"]
- level: None
  nonResourceURLs: ["/healthz*", "/livez*", "/readyz*"]
- level: Request
  resources:
  - group: ""
    resources: ["pods", "pods/*"]
- level: Metadata
`

// ErrNoAuditLog is returned by the audit accessors when the cluster was
// started without Options.AuditLog.
var ErrNoAuditLog = errors.New("harness: cluster started without Options.AuditLog")

// AuditEvent is the part of an apiserver audit event that tests assert on.
type AuditEvent struct {
	AuditID     string
	Stage       string
	Time        time.Time // when the request completed
	Verb        string    // API verb: get, list, delete, deletecollection, patch, ...
	User        string
	Groups      []string
	UserAgent   string
	RequestURI  string
	APIGroup    string
	APIVersion  string
	Resource    string
	Subresource string
	Namespace   string
	Name        string
	Code        int
	// DryRun is true if the request asked for server-side dry-run, either
	// in the query or in the body's options (client-go sends delete
	// options in the body, which is only recorded at level Request).
	DryRun bool
	// RequestObject is the request body as recorded at level Request
	// (pods only), e.g. the DeleteOptions of a delete; nil otherwise.
	RequestObject json.RawMessage
}

type rawAuditEvent struct {
	AuditID    string `json:"auditID"`
	Stage      string `json:"stage"`
	RequestURI string `json:"requestURI"`
	Verb       string `json:"verb"`
	User       struct {
		Username string   `json:"username"`
		Groups   []string `json:"groups"`
	} `json:"user"`
	UserAgent string `json:"userAgent"`
	ObjectRef *struct {
		Resource    string `json:"resource"`
		Namespace   string `json:"namespace"`
		Name        string `json:"name"`
		APIGroup    string `json:"apiGroup"`
		APIVersion  string `json:"apiVersion"`
		Subresource string `json:"subresource"`
	} `json:"objectRef"`
	ResponseStatus *struct {
		Code int `json:"code"`
	} `json:"responseStatus"`
	RequestObject  json.RawMessage `json:"requestObject"`
	StageTimestamp time.Time       `json:"stageTimestamp"`
}

// AuditEvents reads every event written to the audit log so far, oldest
// first.
func (c *Cluster) AuditEvents() ([]AuditEvent, error) {
	if c.auditPath == "" {
		return nil, ErrNoAuditLog
	}
	data, err := os.ReadFile(c.auditPath)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	// The last line may still be being written; only complete lines count.
	if i := bytes.LastIndexByte(data, '\n'); i >= 0 {
		data = data[:i+1]
	} else {
		data = nil
	}
	var events []AuditEvent
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var raw rawAuditEvent
		if err := json.Unmarshal(line, &raw); err != nil {
			return nil, fmt.Errorf("audit log %s: %w", c.auditPath, err)
		}
		events = append(events, raw.toEvent())
	}
	return events, sc.Err()
}

func (r *rawAuditEvent) toEvent() AuditEvent {
	ev := AuditEvent{
		AuditID:    r.AuditID,
		Stage:      r.Stage,
		Time:       r.StageTimestamp,
		Verb:       r.Verb,
		User:       r.User.Username,
		Groups:     r.User.Groups,
		UserAgent:  r.UserAgent,
		RequestURI: r.RequestURI,
	}
	if o := r.ObjectRef; o != nil {
		ev.APIGroup, ev.APIVersion = o.APIGroup, o.APIVersion
		ev.Resource, ev.Subresource = o.Resource, o.Subresource
		ev.Namespace, ev.Name = o.Namespace, o.Name
	}
	if r.ResponseStatus != nil {
		ev.Code = r.ResponseStatus.Code
	}
	if len(r.RequestObject) > 0 && string(r.RequestObject) != "null" {
		ev.RequestObject = r.RequestObject
		var opts struct {
			DryRun []string `json:"dryRun"`
		}
		if json.Unmarshal(r.RequestObject, &opts) == nil && len(opts.DryRun) > 0 {
			ev.DryRun = true
		}
	}
	if u, err := url.Parse(r.RequestURI); err == nil && len(u.Query()["dryRun"]) > 0 {
		ev.DryRun = true
	}
	return ev
}

// String is a one-line summary for test failure messages.
func (e AuditEvent) String() string {
	res := e.Resource
	if e.Subresource != "" {
		res += "/" + e.Subresource
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s %s/%s by %s -> %d", e.Verb, res, e.Namespace, e.Name, e.User, e.Code)
	if e.DryRun {
		b.WriteString(" (dry-run)")
	}
	return b.String()
}

// IsWrite reports whether the event changed (or tried to change) something:
// a create (an eviction is a create of pods/eviction), a delete, a patch or
// an update.
func (e AuditEvent) IsWrite() bool {
	switch e.Verb {
	case "create", "delete", "deletecollection", "patch", "update":
		return true
	}
	return false
}

// SyncAudit makes sure every request made before this call is in the audit
// log: it makes an admin request in the namespace (a get of a pod that does
// not exist) and waits for its event, which the apiserver writes after those
// of requests that completed earlier. It returns the namespace's events
// (every user), oldest first.
func (c *Cluster) SyncAudit(ctx context.Context, namespace string) ([]AuditEvent, error) {
	marker := fmt.Sprintf("audit-marker-%d", c.markers.Add(1))
	if _, err := c.admin.CoreV1().Pods(namespace).Get(ctx, marker, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("marker get: %w, want NotFound", err)
	}
	_, err := c.WaitForAuditEvent(ctx, 30*time.Second, func(ev AuditEvent) bool {
		return ev.User == AdminUser && ev.Verb == "get" && ev.Resource == "pods" && ev.Namespace == namespace && ev.Name == marker
	})
	if err != nil {
		return nil, fmt.Errorf("waiting for the audit marker: %w", err)
	}
	evs, err := c.AuditEvents()
	if err != nil {
		return nil, err
	}
	var out []AuditEvent
	for _, ev := range evs {
		if ev.Namespace == namespace {
			out = append(out, ev)
		}
	}
	return out, nil
}

// WaitForAuditEvent polls the audit log until an event satisfies match.
// The apiserver writes an event just after the response leaves, so a client
// that has its answer may not find the event yet; this bounds that gap.
func (c *Cluster) WaitForAuditEvent(ctx context.Context, timeout time.Duration, match func(AuditEvent) bool) (AuditEvent, error) {
	var found AuditEvent
	var seen int
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		events, err := c.AuditEvents()
		if err != nil {
			return false, err
		}
		seen = len(events)
		for _, ev := range events {
			if match(ev) {
				found = ev
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return AuditEvent{}, fmt.Errorf("no matching audit event among %d within %v: %w", seen, timeout, err)
	}
	return found, nil
}
