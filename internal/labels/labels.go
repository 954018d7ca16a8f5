// Package labels reproduces how Airflow's KubernetesPodOperator labels its
// pods, and reads those labels back into a task-instance identity.
//
// Matching always goes from Airflow's real ids to labels (SafeValue), never
// the other way: a hashed label cannot be turned back into an id.
package labels

import (
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Label keys the KubernetesPodOperator and the KubernetesExecutor set.
const (
	DagID              = "dag_id"
	TaskID             = "task_id"
	RunID              = "run_id"
	MapIndex           = "map_index"
	TryNumber          = "try_number"
	KPO                = "kubernetes_pod_operator"
	AlreadyChecked     = "already_checked"
	AirflowWorker      = "airflow-worker"
	KubernetesExecutor = "kubernetes_executor"
	// ExecutionDate marks pods of providers older than apache/airflow#21960,
	// which carry no run_id.
	ExecutionDate = "execution_date"
)

// KPOSelector selects the pods KubernetesPodOperator (and its subclasses) made.
const KPOSelector = KPO + "=True"

// MaxLabelLen is Kubernetes' limit on a label value.
const MaxLabelLen = 63

// unsafeChars is Airflow's pattern, byte for byte: strip leading and trailing
// non-alphanumerics and every character a label value may not hold.
var unsafeChars = regexp.MustCompile(`^[^a-z0-9A-Z]*|[^a-zA-Z0-9_\-\.]|[^a-z0-9A-Z]*$`)

// SafeValue is Airflow's make_safe_label_value: sanitize, and if that changed
// anything or the value is too long, keep 53 characters and append "-" and the
// first 9 hex digits of the MD5 of the original string.
func SafeValue(s string) string {
	if alreadySafe(s) {
		return s
	}
	safe := unsafeChars.ReplaceAllString(s, "")
	if len(safe) > MaxLabelLen || s != safe {
		sum := md5.Sum([]byte(s))
		hash := hex.EncodeToString(sum[:])[:9]
		keep := MaxLabelLen - len(hash) - 1
		if len(safe) > keep {
			safe = safe[:keep]
		}
		safe = safe + "-" + hash
	}
	return safe
}

// alreadySafe is the common case the pattern would leave untouched: only
// [A-Za-z0-9_.-], alphanumeric at both ends, short enough. It spares the
// regexp for most dag and task ids.
func alreadySafe(s string) bool {
	if s == "" || len(s) > MaxLabelLen || !isAlnum(s[0]) || !isAlnum(s[len(s)-1]) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isAlnum(c) && c != '_' && c != '-' && c != '.' {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// ForTaskInstance returns the labels KubernetesPodOperator puts on the pod of
// a task instance: map_index only for mapped tasks, try_number only when
// given (the operator's own pod search leaves it out).
func ForTaskInstance(dagID, taskID, runID string, mapIndex int, tryNumber *int) map[string]string {
	m := map[string]string{
		DagID:  SafeValue(dagID),
		TaskID: SafeValue(taskID),
		RunID:  SafeValue(runID),
		KPO:    "True",
	}
	if mapIndex >= 0 {
		m[MapIndex] = strconv.Itoa(mapIndex)
	}
	if tryNumber != nil {
		m[TryNumber] = strconv.Itoa(*tryNumber)
	}
	return m
}

// Selector renders labels as an equality selector for `kubectl get pods -l`,
// keys sorted so the output is stable.
func Selector(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, k+"="+m[k])
	}
	return strings.Join(parts, ",")
}

// Key is a task instance as its pod's labels name it: label values, which
// are SafeValue of the real ids.
type Key struct {
	DagID    string
	RunID    string
	TaskID   string
	MapIndex int
}

func (k Key) String() string {
	if k.MapIndex >= 0 {
		return fmt.Sprintf("%s/%s/%s[%d]", k.DagID, k.RunID, k.TaskID, k.MapIndex)
	}
	return fmt.Sprintf("%s/%s/%s", k.DagID, k.RunID, k.TaskID)
}

// KeyOf normalizes real ids to the key their pod carries.
func KeyOf(dagID, runID, taskID string, mapIndex int) Key {
	return Key{DagID: SafeValue(dagID), RunID: SafeValue(runID), TaskID: SafeValue(taskID), MapIndex: mapIndex}
}

// Identity is what a KPO pod's labels say about its task instance and try.
type Identity struct {
	Key
	TryNumber      int
	AlreadyChecked bool
}

// ParseIdentity reads a pod's identity labels. It fails on anything it cannot
// read with certainty, so that such a pod is skipped rather than guessed at.
func ParseIdentity(podLabels map[string]string) (Identity, error) {
	var id Identity
	for _, k := range []string{DagID, TaskID, RunID, TryNumber} {
		if podLabels[k] == "" {
			if k == RunID && podLabels[ExecutionDate] != "" {
				return id, fmt.Errorf("label %s missing: pod of a provider older than run_id labels (has %s)", RunID, ExecutionDate)
			}
			return id, fmt.Errorf("label %s missing or empty", k)
		}
	}
	try, err := strconv.Atoi(podLabels[TryNumber])
	if err != nil || try < 0 {
		return id, fmt.Errorf("label %s=%q is not a non-negative integer", TryNumber, podLabels[TryNumber])
	}
	mapIndex := -1
	if v, ok := podLabels[MapIndex]; ok {
		mapIndex, err = strconv.Atoi(v)
		if err != nil || mapIndex < 0 {
			return id, fmt.Errorf("label %s=%q is not a non-negative integer", MapIndex, v)
		}
	}
	id.Key = Key{DagID: podLabels[DagID], RunID: podLabels[RunID], TaskID: podLabels[TaskID], MapIndex: mapIndex}
	id.TryNumber = try
	id.AlreadyChecked = podLabels[AlreadyChecked] == "True"
	return id, nil
}

// hashSuffix is what SafeValue appends to a value it had to change.
var hashSuffix = regexp.MustCompile(`-[0-9a-f]{9}$`)

// Exact reports whether a label value can only stand for the id equal to
// it: SafeValue leaves such an id as it is, and any other id it changes
// gets a "-" and nine hex digits at the end, which v lacks. The API can
// then be asked about v directly, no listing needed.
func Exact(v string) bool {
	return alreadySafe(v) && !hashSuffix.MatchString(v)
}

// isoInLabel finds Airflow's run-id timestamp (isoformat() of an aware
// datetime, "2026-11-27T09:00:00.123456+00:00") as SafeValue leaves it:
// colons and the "+" dropped, the "." and a "-" offset kept.
var isoInLabel = regexp.MustCompile(`^(.*\d{4}-\d{2}-\d{2}T)(\d{2})(\d{2})(\d{2})(\.\d{1,6})?(-?)(\d{2})(\d{2})(.*)$`)

// RunIDCandidates returns the run ids whose label is v that can be rebuilt
// from it: v itself when Exact; else Airflow's generated run ids
// ("scheduled__<isoformat>", "manual__<isoformat>", Airflow 3's
// "<type>__<isoformat>_<random>"), whose only unsafe characters are the
// timestamp's colons and "+". Each candidate is verified by its hash, so a
// candidate's label is v; another id with the same label would need the
// same 53-character prefix and an MD5 collision in 36 bits, which would
// break Airflow's own pod search by labels as well. A hashed-looking v that
// is itself label-safe may also be a run id of its own, so it comes last:
// the caller asks which of several exists.
func RunIDCandidates(v string) []string {
	if Exact(v) {
		return []string{v}
	}
	var literal []string
	if alreadySafe(v) {
		literal = []string{v}
	}
	i := strings.LastIndexByte(v, '-')
	if i < 0 || !hashSuffix.MatchString(v) {
		return literal
	}
	m := isoInLabel.FindStringSubmatch(v[:i])
	if m == nil {
		return literal
	}
	sign := "+"
	if m[6] == "-" {
		sign = "-"
	}
	c := m[1] + m[2] + ":" + m[3] + ":" + m[4] + m[5] + sign + m[7] + ":" + m[8] + m[9]
	if SafeValue(c) != v {
		return literal
	}
	return append([]string{c}, literal...)
}
