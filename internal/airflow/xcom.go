package airflow

import (
	"errors"
	"fmt"
	"regexp"
)

// ErrNoPodName is wrapped when the pod_name XCom holds something that is no
// pod name: the reference an object-storage XCom backend stores instead of
// the value (xcom_s3://...), null, a number, an object. It is an answer
// about that task instance, not Airflow failing: the pod that needed it is
// kept and the cycle goes on.
var ErrNoPodName = errors.New("the XCom value is no pod name")

// NoPodName is an error that wraps ErrNoPodName in its own words.
func NoPodName(format string, a ...any) error { return noPodName(fmt.Sprintf(format, a...)) }

type noPodName string

func (e noPodName) Error() string      { return string(e) }
func (noPodName) Is(target error) bool { return target == ErrNoPodName }

// PodNameKey is the XCom key KubernetesPodOperator pushes the pod name under.
const PodNameKey = "pod_name"

// PodNameOf finishes a client's PodNameXCom: value is the string the API
// answered for the pod_name XCom of key, err why it has none. Every error
// names the task instance.
func PodNameOf(key TIKey, value string, err error) (string, error) {
	if err == nil {
		value, err = PodNameFromXCom(value)
	}
	if err != nil {
		return "", fmt.Errorf("%s XCom of %s: %w", PodNameKey, key, err)
	}
	return value, nil
}

// dnsSubdomain is the DNS-1123 subdomain syntax of a pod name.
var dnsSubdomain = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)

// PodNameFromXCom reads a pod name out of an XCom string value. Airflow 2
// renders the stored value with str() and a custom XCom backend or a
// JSON-encoded push leaves quotes around it; some Airflow 3 paths stored
// strings JSON-encoded twice (apache/airflow#46513, #64573). One level of
// matching quotes is stripped. A value that is still no valid pod name is an
// error: the caller compares it with pod names, and garbage would never
// match, making every pod of the task instance look unused.
func PodNameFromXCom(v string) (string, error) {
	if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
		v = v[1 : len(v)-1]
	}
	if len(v) > 253 || !dnsSubdomain.MatchString(v) {
		if len(v) > 80 {
			v = v[:80] + "…"
		}
		return "", NoPodName("the XCom value %q is not a pod name", v)
	}
	return v, nil
}
