// The end-to-end suite: an Airflow REST API simulator, a harness that runs a
// real kube-apiserver and etcd, and tests that drive the built kpo-reaper
// binary against both. A separate module so that the main module's
// dependencies stay those of the reaper alone.
module github.com/kpo-reaper/kpo-reaper/e2e

go 1.26.0

require (
	github.com/getkin/kin-openapi v0.153.0 // indirect
	go.yaml.in/yaml/v2 v2.4.4 // indirect
	k8s.io/api v0.37.2 // indirect
	k8s.io/apimachinery v0.37.2 // indirect
	k8s.io/client-go v0.37.2 // indirect
	sigs.k8s.io/yaml v1.6.0 // indirect
)
