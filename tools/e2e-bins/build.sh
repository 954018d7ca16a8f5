#!/usr/bin/env bash
# Builds the kube-apiserver and etcd that the end-to-end suite runs against,
# from the Go module proxy, into e2e/bin/k8s-v<K8S>-etcd-v<ETCD>/. The folder
# is keyed by the versions pinned in this directory's go.mod, so bumping
# either one makes the harness look for (and this script build) a new pair
# instead of silently reusing stale binaries.
#
# Usage: tools/e2e-bins/build.sh       (from any directory; `make e2e-bins`)
# Env:   KPO_E2E_BIN_DIR  build into this directory instead (the harness
#                         reads the same variable)
#
# The last line of output is the bin directory, so callers can capture it
# with `tail -n1`.
set -euo pipefail

tools_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# A relative KPO_E2E_BIN_DIR means relative to where the script was run,
# not to the directory it changes into.
if [ -n "${KPO_E2E_BIN_DIR:-}" ] && [ "${KPO_E2E_BIN_DIR#/}" = "$KPO_E2E_BIN_DIR" ]; then
	KPO_E2E_BIN_DIR="$PWD/$KPO_E2E_BIN_DIR"
fi
cd "$tools_dir"

# -buildvcs=false: the sources come from the module cache, so stamping the
# surrounding git checkout's revision into these binaries would be wrong, and
# it fails outright when git is missing or the checkout has another owner.
export GOFLAGS="${GOFLAGS:+$GOFLAGS }-buildvcs=false"

k8s_version="$(go list -m -f '{{.Version}}' k8s.io/kubernetes)"
etcd_version="$(go list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3)"
# The tag's commit time from the proxy, so that rebuilding the same version
# gives the same binary rather than one stamped with today's date.
k8s_time="$(go list -m -f '{{if .Time}}{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}{{end}}' k8s.io/kubernetes)"

bin_dir="${KPO_E2E_BIN_DIR:-$(cd "$tools_dir/../.." && pwd)/e2e/bin/k8s-${k8s_version}-etcd-${etcd_version}}"
mkdir -p "$bin_dir"
echo "e2e binaries: kube-apiserver ${k8s_version} and etcd ${etcd_version} in ${bin_dir}"

# Without these, /version (and every client that checks it) reports
# v0.0.0-master. They only change the link step, so they cost nothing on a
# warm build cache. Same keys as upstream's hack/lib/version.sh.
k8s_semver="${k8s_version#v}"
k8s_major="${k8s_semver%%.*}"
k8s_minor="${k8s_semver#*.}"
k8s_minor="${k8s_minor%%.*}"
k8s_ldflags=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
	k8s_ldflags+=" -X '${pkg}.gitVersion=${k8s_version}'"
	k8s_ldflags+=" -X '${pkg}.gitMajor=${k8s_major}'"
	k8s_ldflags+=" -X '${pkg}.gitMinor=${k8s_minor}'"
	k8s_ldflags+=" -X '${pkg}.gitTreeState=clean'"
	if [ -n "$k8s_time" ]; then
		k8s_ldflags+=" -X '${pkg}.buildDate=${k8s_time}'"
	fi
done

tmp=""
cleanup() { if [ -n "$tmp" ]; then rm -f "$tmp"; fi; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# build NAME VERSION PACKAGE ESTIMATE LDFLAGS
build() {
	local name="$1" version="$2" pkg="$3" estimate="$4" ldflags="$5"
	local out="$bin_dir/$name"
	if [ -x "$out" ]; then
		echo "$name $version: already built at $out, skipping"
		return
	fi
	echo "building $name $version from the Go module proxy: $estimate"
	local start
	start="$(date +%s)"
	# Build beside the target and rename, so that an interrupted build never
	# leaves a half-written binary that the next run would mistake for done.
	tmp="$(mktemp "$bin_dir/.$name.XXXXXX")"
	go build -trimpath -ldflags "$ldflags" -o "$tmp" "$pkg"
	chmod 0755 "$tmp"
	mv -f "$tmp" "$out"
	tmp=""
	echo "built $name $version in $(($(date +%s) - start))s: $out"
}

build etcd "$etcd_version" ./etcd \
	"under a minute once the shared dependencies are compiled, a few minutes cold" \
	""
build kube-apiserver "$k8s_version" ./kube-apiserver \
	"a cold build takes 15-18 minutes on 2 cores; later builds reuse Go's cache" \
	"$k8s_ldflags"

echo "$bin_dir"
