// Command kube-apiserver is the upstream API server, built from the Go module
// proxy so the end-to-end suite needs no Docker engine and no downloads from
// dl.k8s.io.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	os.Exit(cli.Run(app.NewAPIServerCommand()))
}
