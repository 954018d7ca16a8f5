package harness

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// childEnv makes the test binary act as a throwaway parent that starts a
// cluster and waits to be killed, for TestChildrenDieWithTestProcess.
const childEnv = "KPO_E2E_HARNESS_CHILD"

var shared struct {
	once sync.Once
	c    *Cluster
	err  error
}

// sharedCluster is one audited cluster for all tests that only need an API
// to talk to; each uses its own namespace so they can run in parallel.
// Tests call t.Parallel() before it, so the sequential lifecycle tests have
// finished (and can count child processes) before it starts.
func sharedCluster(t *testing.T) *Cluster {
	t.Helper()
	shared.once.Do(func() {
		start := time.Now()
		shared.c, shared.err = Start(context.Background(), Options{AuditLog: true})
		if shared.err == nil {
			fmt.Fprintf(os.Stderr, "harness: shared cluster ready in %v at %s\n", time.Since(start).Round(time.Millisecond), shared.c.ServerURL())
		}
	})
	if shared.err != nil {
		t.Fatalf("starting the shared cluster: %v", shared.err)
	}
	return shared.c
}

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		runChild()
		return
	}
	code := m.Run()
	if shared.c != nil {
		if err := shared.c.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "stopping the shared cluster: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

func runChild() {
	c, err := Start(context.Background(), Options{})
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	pids := c.PIDs()
	fmt.Printf("pids %d %d %s\n", pids[0], pids[1], c.Dir())
	select {} // until the parent test kills this process
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// gone reports whether pid no longer runs. A zombie counts as gone: it has
// exited and holds nothing, it just waits for a parent to reap it.
func gone(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return true
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	// The state follows the parenthesised command name.
	s := string(stat)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] == 'Z' || s[i+2] == 'X'
	}
	return false
}

// childServers lists this process's children that are etcd or
// kube-apiserver. Children are recorded per thread, so every thread counts.
func childServers(t *testing.T) []string {
	t.Helper()
	tasks, err := filepath.Glob("/proc/self/task/*/children")
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for _, f := range tasks {
		data, err := os.ReadFile(f)
		if err != nil {
			continue // the thread exited meanwhile
		}
		for _, field := range strings.Fields(string(data)) {
			comm, err := os.ReadFile("/proc/" + field + "/comm")
			if err != nil {
				continue
			}
			name := strings.TrimSpace(string(comm))
			if (name == EtcdBinary || name == APIServerBinary) && !gone(mustAtoi(t, field)) {
				found = append(found, name+"("+field+")")
			}
		}
	}
	return found
}

func mustAtoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestStartReadyStop(t *testing.T) {
	ctx := testContext(t)
	begin := time.Now()
	c, err := Start(ctx, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("start to ready: %v", time.Since(begin).Round(time.Millisecond))
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = c.Stop()
		}
	})

	body, err := c.Admin().Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
	if err != nil || string(body) != "ok" {
		t.Fatalf("/readyz = %q, %v", body, err)
	}
	if v, err := c.Admin().Discovery().ServerVersion(); err != nil {
		t.Fatal(err)
	} else {
		// Informational: binaries built without tools/e2e-bins/build.sh's
		// ldflags say v0.0.0-master, which is harmless for these tests.
		t.Logf("server version %s", v.GitVersion)
	}
	kc, err := clientcmd.BuildConfigFromFlags("", c.AdminKubeconfig())
	if err != nil {
		t.Fatal(err)
	}
	admin := kubernetes.NewForConfigOrDie(kc)
	review, err := admin.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if u := review.Status.UserInfo; u.Username != AdminUser || !slices.Contains(u.Groups, "system:masters") {
		t.Fatalf("admin kubeconfig authenticates as %+v", u)
	}

	pids := c.PIDs()
	if len(pids) != 2 {
		t.Fatalf("PIDs() = %v, want etcd and kube-apiserver", pids)
	}
	dir := c.Dir()
	if err := c.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	stopped = true
	for _, pid := range pids {
		if !gone(pid) {
			t.Errorf("pid %d still running after Stop", pid)
		}
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("working directory %s still there after Stop (stat: %v)", dir, err)
	}
	if err := c.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if left := childServers(t); len(left) > 0 {
		t.Errorf("servers still running after Stop: %v", left)
	}
}

func TestFailedStartReportsLogsAndLeavesNothing(t *testing.T) {
	_, err := Start(testContext(t), Options{ExtraAPIServerArgs: []string{"--no-such-flag"}})
	if err == nil {
		t.Fatal("Start succeeded with an unknown apiserver flag")
	}
	if !strings.Contains(err.Error(), "unknown flag: --no-such-flag") {
		t.Errorf("error lacks the apiserver's own complaint from its log:\n%v", err)
	}
	if left := childServers(t); len(left) > 0 {
		t.Errorf("servers still running after a failed Start: %v", left)
	}
}

func TestMissingBinariesNameTheBuildCommand(t *testing.T) {
	t.Setenv(BinDirEnv, t.TempDir())
	_, err := Start(testContext(t), Options{})
	if err == nil || !strings.Contains(err.Error(), "make e2e-bins") {
		t.Fatalf("Start with no binaries: %v; want an error naming `make e2e-bins`", err)
	}
}

func TestDefaultBinDirIsKeyedByToolVersions(t *testing.T) {
	if os.Getenv(BinDirEnv) != "" {
		t.Skipf("%s is set, so the default location is not used", BinDirEnv)
	}
	dir, err := BinDir()
	if err != nil {
		t.Fatal(err)
	}
	root, err := e2eRoot()
	if err != nil {
		t.Fatal(err)
	}
	k8s, etcd, err := toolVersions(toolsGoMod(root))
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(root, "bin", "k8s-"+k8s+"-etcd-"+etcd); dir != want {
		t.Fatalf("BinDir() = %s, want %s", dir, want)
	}
}

// TestChildrenDieWithTestProcess kills a test process that never calls
// Stop (as a panic or a -timeout abort would) and checks its servers die too.
func TestChildrenDieWithTestProcess(t *testing.T) {
	ctx := testContext(t)
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("child printed no pids: %v", err)
	}
	var etcdPID, apiPID int
	var dir string
	if _, err := fmt.Sscanf(line, "pids %d %d %s", &etcdPID, &apiPID, &dir); err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("child said %q", line)
	}
	// A killed process cannot clean up after itself; this test must.
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	// Death signals are delivered asynchronously, hence the bounded poll.
	err = wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 20*time.Second, true, func(context.Context) (bool, error) {
		return gone(etcdPID) && gone(apiPID), nil
	})
	if err != nil {
		// Do not leak them into the rest of the run.
		for _, pid := range []int{etcdPID, apiPID} {
			if !gone(pid) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		t.Fatalf("etcd %d or kube-apiserver %d outlived the killed test process", etcdPID, apiPID)
	}
}

func TestDeleteSemantics(t *testing.T) {
	t.Parallel()
	c := sharedCluster(t)
	ctx := testContext(t)
	const ns = "delete-semantics"
	pods := c.Admin().CoreV1().Pods(ns)
	newPod := func(t *testing.T, name string) *corev1.Pod {
		t.Helper()
		p, err := c.CreatePod(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}})
		if err != nil {
			t.Fatal(err)
		}
		if p.Spec.NodeName != DefaultNode {
			t.Fatalf("nodeName = %q, want %q", p.Spec.NodeName, DefaultNode)
		}
		return p
	}
	get := func(t *testing.T, name string) *corev1.Pod {
		t.Helper()
		p, err := pods.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("pod %s should still exist: %v", name, err)
		}
		return p
	}
	mustBeGone := func(t *testing.T, name string) {
		t.Helper()
		if _, err := pods.Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Fatalf("pod %s should be gone, Get: %v", name, err)
		}
	}

	t.Run("graceful delete of a bound pod leaves it Terminating", func(t *testing.T) {
		newPod(t, "graceful")
		if err := pods.Delete(ctx, "graceful", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		p := get(t, "graceful")
		if p.DeletionTimestamp == nil {
			t.Fatal("no deletionTimestamp after a graceful delete")
		}
		if g := p.DeletionGracePeriodSeconds; g == nil || *g != 30 {
			t.Fatalf("deletionGracePeriodSeconds = %v, want the default 30", g)
		}
		// What the reaper does to such a pod: a forced delete ends it.
		zero := int64(0)
		if err := pods.Delete(ctx, "graceful", metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
			t.Fatal(err)
		}
		mustBeGone(t, "graceful")
	})

	t.Run("grace period 0 removes it at once", func(t *testing.T) {
		newPod(t, "force")
		zero := int64(0)
		if err := pods.Delete(ctx, "force", metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
			t.Fatal(err)
		}
		mustBeGone(t, "force")
	})

	t.Run("wrong UID precondition is a Conflict", func(t *testing.T) {
		p := newPod(t, "precondition")
		zero := int64(0)
		wrong := types.UID("00000000-0000-0000-0000-000000000000")
		err := pods.Delete(ctx, "precondition", metav1.DeleteOptions{GracePeriodSeconds: &zero, Preconditions: &metav1.Preconditions{UID: &wrong}})
		if !apierrors.IsConflict(err) {
			t.Fatalf("delete with a wrong UID: %v, want Conflict", err)
		}
		if get(t, "precondition").DeletionTimestamp != nil {
			t.Fatal("a failed precondition still marked the pod for deletion")
		}
		err = pods.Delete(ctx, "precondition", metav1.DeleteOptions{GracePeriodSeconds: &zero, Preconditions: &metav1.Preconditions{UID: &p.UID}})
		if err != nil {
			t.Fatalf("delete with the right UID: %v", err)
		}
		mustBeGone(t, "precondition")
	})

	t.Run("server-side dry-run leaves the pod", func(t *testing.T) {
		newPod(t, "dry-run")
		zero := int64(0)
		if err := pods.Delete(ctx, "dry-run", metav1.DeleteOptions{GracePeriodSeconds: &zero, DryRun: []string{metav1.DryRunAll}}); err != nil {
			t.Fatal(err)
		}
		if get(t, "dry-run").DeletionTimestamp != nil {
			t.Fatal("dry-run delete marked the pod for deletion")
		}
	})

	t.Run("an unbound pod is removed at once even by a graceful delete", func(t *testing.T) {
		// Why CreatePod always binds pods to a node.
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "unbound", Namespace: ns},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "base", Image: "registry.invalid/x:1"}}},
		}
		if _, err := pods.Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := pods.Delete(ctx, "unbound", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		mustBeGone(t, "unbound")
	})

	t.Run("status written through the subresource", func(t *testing.T) {
		p, err := c.CreatePod(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "with-status", Namespace: ns},
			Status:     corev1.PodStatus{Phase: corev1.PodRunning},
		})
		if err != nil {
			t.Fatal(err)
		}
		if p.Status.Phase != corev1.PodRunning {
			t.Fatalf("phase after CreatePod = %q", p.Status.Phase)
		}
		// A finished pod is not worth a grace period to the apiserver.
		if err := c.SetPodStatus(ctx, ns, "with-status", corev1.PodStatus{Phase: corev1.PodSucceeded}); err != nil {
			t.Fatal(err)
		}
		if got := get(t, "with-status").Status.Phase; got != corev1.PodSucceeded {
			t.Fatalf("phase = %q after SetPodStatus", got)
		}
		if err := pods.Delete(ctx, "with-status", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		mustBeGone(t, "with-status")
	})
}

// rbacYAML is shaped like what deploy/ ships: the Namespace comes last to
// prove Apply orders it first, and neither the namespaced objects nor the
// subjects name a namespace.
const rbacYAML = `
apiVersion: v1
kind: ServiceAccount
metadata:
  name: reaper
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: reaper
rules:
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch", "delete"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: reaper
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: reaper
subjects:
- kind: ServiceAccount
  name: reaper
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: rbac-test-node-reader
rules:
- apiGroups: [""]
  resources: ["nodes"]
  verbs: ["get"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: rbac-test-node-reader
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: rbac-test-node-reader
subjects:
- kind: ServiceAccount
  name: reaper
---
apiVersion: v1
kind: Namespace
metadata:
  name: rbac-test
---
`

func TestServiceAccountRBACAndAudit(t *testing.T) {
	t.Parallel()
	c := sharedCluster(t)
	ctx := testContext(t)
	const ns = "rbac-test"
	if err := c.EnsureNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	path, err := c.ServiceAccountKubeconfig(ctx, ns, "reaper")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		t.Fatal(err)
	}
	sa := kubernetes.NewForConfigOrDie(cfg)
	const user = "system:serviceaccount:rbac-test:reaper"
	review, err := sa.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := review.Status.UserInfo.Username; got != user {
		t.Fatalf("ServiceAccount kubeconfig authenticates as %q, want %q", got, user)
	}

	if _, err := c.CreatePod(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "victim", Namespace: ns}}); err != nil {
		t.Fatal(err)
	}
	zero := int64(0)
	force := metav1.DeleteOptions{GracePeriodSeconds: &zero}
	if err := sa.CoreV1().Pods(ns).Delete(ctx, "victim", force); !apierrors.IsForbidden(err) {
		t.Fatalf("delete before any RBAC: %v, want Forbidden", err)
	}
	if _, err := c.Admin().CoreV1().Pods(ns).Get(ctx, "victim", metav1.GetOptions{}); err != nil {
		t.Fatalf("a forbidden delete removed the pod: %v", err)
	}

	// Twice: the second pass must update in place, not fail on existence.
	for i := 0; i < 2; i++ {
		if err := c.Apply(ctx, []byte(rbacYAML), ns); err != nil {
			t.Fatalf("Apply pass %d: %v", i+1, err)
		}
	}
	if _, err := sa.CoreV1().Nodes().Get(ctx, DefaultNode, metav1.GetOptions{}); err != nil {
		t.Fatalf("ClusterRoleBinding from Apply did not take: %v", err)
	}
	if _, err := sa.CoreV1().Pods("default").List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("the Role leaked outside its namespace: list in default: %v", err)
	}
	if err := sa.CoreV1().Pods(ns).Delete(ctx, "victim", metav1.DeleteOptions{GracePeriodSeconds: &zero, DryRun: []string{metav1.DryRunAll}}); err != nil {
		t.Fatalf("dry-run delete after RBAC: %v", err)
	}
	if err := sa.CoreV1().Pods(ns).Delete(ctx, "victim", force); err != nil {
		t.Fatalf("delete after RBAC: %v", err)
	}

	find := func(what string, match func(AuditEvent) bool) AuditEvent {
		t.Helper()
		ev, err := c.WaitForAuditEvent(ctx, 10*time.Second, match)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return ev
	}
	isVictimDelete := func(ev AuditEvent) bool {
		return ev.Verb == "delete" && ev.Resource == "pods" && ev.Subresource == "" &&
			ev.Namespace == ns && ev.Name == "victim" && ev.User == user
	}
	denied := find("forbidden delete", func(ev AuditEvent) bool { return isVictimDelete(ev) && ev.Code == 403 })
	dry := find("dry-run delete", func(ev AuditEvent) bool { return isVictimDelete(ev) && ev.Code == 200 && ev.DryRun })
	forced := find("real delete", func(ev AuditEvent) bool { return isVictimDelete(ev) && ev.Code == 200 && !ev.DryRun })
	t.Logf("audit: %v | %v | %v", denied, dry, forced)
	var opts metav1.DeleteOptions
	if err := json.Unmarshal(forced.RequestObject, &opts); err != nil {
		t.Fatalf("delete options in the audit event: %v (%s)", err, forced.RequestObject)
	}
	if opts.GracePeriodSeconds == nil || *opts.GracePeriodSeconds != 0 {
		t.Fatalf("audited delete options %s lack gracePeriodSeconds: 0", forced.RequestObject)
	}
	if !forced.Time.After(dry.Time) && !forced.Time.Equal(dry.Time) {
		t.Errorf("events out of order: dry-run at %v, real at %v", dry.Time, forced.Time)
	}

	// SyncAudit: no waiting needed for what came before; only ns's events.
	synced, err := c.SyncAudit(ctx, ns)
	if err != nil {
		t.Fatal(err)
	}
	deletes := 0
	for _, ev := range synced {
		if ev.Namespace != ns {
			t.Errorf("SyncAudit(%s) returned %v", ns, ev)
		}
		if isVictimDelete(ev) {
			deletes++
			if !ev.IsWrite() {
				t.Errorf("IsWrite is false for %v", ev)
			}
		}
	}
	if deletes != 3 {
		t.Errorf("SyncAudit returned %d deletes of the victim, want 3 (forbidden, dry-run, real)", deletes)
	}
}

func TestAuditEventsNeedsAuditLog(t *testing.T) {
	c := &Cluster{}
	if _, err := c.AuditEvents(); !errors.Is(err, ErrNoAuditLog) {
		t.Fatalf("AuditEvents without an audit log: %v", err)
	}
}

func TestDecodeObjects(t *testing.T) {
	objs, err := decodeObjects([]byte(rbacYAML + "\n---\napiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ServiceAccount\n  metadata: {name: from-list}\n"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, o := range objs {
		names = append(names, o.GetKind()+"/"+o.GetName())
	}
	want := "ServiceAccount/reaper Role/reaper RoleBinding/reaper ClusterRole/rbac-test-node-reader ClusterRoleBinding/rbac-test-node-reader Namespace/rbac-test ServiceAccount/from-list"
	if got := strings.Join(names, " "); got != want {
		t.Fatalf("decoded %s\nwant    %s", got, want)
	}
	if _, err := decodeObjects([]byte("kind: Role\n")); err == nil {
		t.Fatal("a document without apiVersion and name was accepted")
	}
}
