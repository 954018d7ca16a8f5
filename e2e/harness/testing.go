package harness

import (
	"context"
	"testing"
)

// StartT starts a cluster for a test or benchmark and stops it in
// t.Cleanup. A missing binary or a failed start fails the test (it never
// skips: an e2e run that silently tests nothing looks like a pass). If the
// test fails, the tails of both processes' logs are logged, and any crash of
// either process during the test fails it.
func StartT(t testing.TB, opts Options) *Cluster {
	t.Helper()
	c, err := Start(context.Background(), opts)
	if err != nil {
		t.Fatalf("starting kube-apiserver and etcd: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("cluster logs (dir %s):\n%s", c.Dir(), c.LogTails())
		}
		if err := c.Stop(); err != nil {
			t.Errorf("stopping the cluster: %v", err)
		}
	})
	return c
}
