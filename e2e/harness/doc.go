// Package harness runs a real kube-apiserver backed by a real etcd, as two
// child processes on loopback, for the end-to-end suite.
//
// The fake clientset cannot show what the reaper depends on: graceful
// deletion leaving a pod Terminating on a lost node, UID preconditions,
// server-side dry-run, RBAC denials and the audit trail of who deleted what.
// A real apiserver shows all of them, and without a kubelet, scheduler or
// controller-manager nothing else touches the pods a test creates.
//
// What is missing compared with a full cluster, because no controllers run:
// a namespace has no "default" ServiceAccount (the ServiceAccount admission
// plugin is disabled so pods do not need one), a deleted namespace never
// finishes terminating, and pod status only changes when a test writes it
// (SetPodStatus).
//
// The binaries are built from the Go module proxy by tools/e2e-bins/build.sh
// (`make e2e-bins`); see BinDir for where they are looked up.
package harness
