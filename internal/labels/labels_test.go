package labels

import (
	"bytes"
	"encoding/json"
	"math/rand"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// Vectors from Airflow's own tests (copied from shared/reference).
func TestSafeValueVectors(t *testing.T) {
	data, err := os.ReadFile("testdata/label-vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var vectors []struct{ Input, Output, Source string }
	if err := json.Unmarshal(data, &vectors); err != nil {
		t.Fatal(err)
	}
	if len(vectors) < 10 {
		t.Fatalf("only %d vectors loaded", len(vectors))
	}
	for _, v := range vectors {
		if got := SafeValue(v.Input); got != v.Output {
			t.Errorf("SafeValue(%q) = %q, want %q (%s)", v.Input, got, v.Output, v.Source)
		}
	}
}

func TestSafeValueEdgeCases(t *testing.T) {
	cases := map[string]string{
		"_private_dag":                         "private_dag-c80656058",
		"x-":                                   "x-8d4865ef3",
		"Компьютер":                            "-956d56adf",
		"影師嗎":                                  "-a168bce6d",
		"my_dág_id":                            "my_dg_id-7c334bc92",
		"group.task":                           "group.task",
		"scheduled__2025-06-01T00:00:00+00:00": "scheduled__2025-06-01T0000000000-62a051894",
		"manual__2025-06-01T12:00:00.123456+00:00": "manual__2025-06-01T120000.1234560000-c327f4ee1",
	}
	for in, want := range cases {
		if got := SafeValue(in); got != want {
			t.Errorf("SafeValue(%q) = %q, want %q", in, got, want)
		}
	}
}

// The differential test: Airflow's Python function run by python3 on random
// inputs must agree with the port on every one.
func TestSafeValueMatchesPython(t *testing.T) {
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not installed; the vector tests still cover the port")
	}
	rng := rand.New(rand.NewSource(58968))
	alphabet := []rune("abcXYZ019_-.:+ /@*~äé影\n\tZ")
	inputs := make([]string, 0, 2000)
	for i := 0; i < 2000; i++ {
		n := rng.Intn(90)
		var b strings.Builder
		for j := 0; j < n; j++ {
			b.WriteRune(alphabet[rng.Intn(len(alphabet))])
		}
		inputs = append(inputs, b.String())
	}
	script := `
import json, re, sys
from hashlib import md5
def make_safe_label_value(string):
    safe_label = re.sub(r"^[^a-z0-9A-Z]*|[^a-zA-Z0-9_\-\.]|[^a-z0-9A-Z]*$", "", string)
    if len(safe_label) > 63 or string != safe_label:
        safe_hash = md5(string.encode()).hexdigest()[:9]
        safe_label = safe_label[: 63 - len(safe_hash) - 1] + "-" + safe_hash
    return safe_label
json.dump([make_safe_label_value(s) for s in json.load(sys.stdin)], sys.stdout)
`
	in, _ := json.Marshal(inputs)
	cmd := exec.Command(python, "-c", script)
	cmd.Stdin = bytes.NewReader(in)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python3: %v", err)
	}
	var want []string
	if err := json.Unmarshal(out, &want); err != nil {
		t.Fatal(err)
	}
	for i, s := range inputs {
		if got := SafeValue(s); got != want[i] {
			t.Errorf("SafeValue(%q) = %q, python says %q", s, got, want[i])
		}
	}
}

func TestForTaskInstanceAndSelector(t *testing.T) {
	two := 2
	got := Selector(ForTaskInstance("kpo_zombie_dag", "mapped_kpo_task", "manual__2016-01-01T00:00:00+00:00", 0, &two))
	want := "dag_id=kpo_zombie_dag,kubernetes_pod_operator=True,map_index=0,run_id=manual__2016-01-01T0000000000-2b88d1d57,task_id=mapped_kpo_task,try_number=2"
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	unmapped := ForTaskInstance("d", "t", "r", -1, nil)
	if _, ok := unmapped[MapIndex]; ok {
		t.Error("unmapped task must not get a map_index label")
	}
	if _, ok := unmapped[TryNumber]; ok {
		t.Error("try_number must be absent unless given")
	}
}

func TestParseIdentity(t *testing.T) {
	base := func() map[string]string {
		return map[string]string{DagID: "d", TaskID: "t", RunID: "r", TryNumber: "1", KPO: "True"}
	}
	id, err := ParseIdentity(base())
	if err != nil || id.MapIndex != -1 || id.TryNumber != 1 || id.AlreadyChecked {
		t.Fatalf("unmapped: %+v %v", id, err)
	}
	m := base()
	m[MapIndex] = "3"
	m[AlreadyChecked] = "True"
	id, err = ParseIdentity(m)
	if err != nil || id.MapIndex != 3 || !id.AlreadyChecked {
		t.Fatalf("mapped: %+v %v", id, err)
	}
	bad := []func(map[string]string){
		func(m map[string]string) { delete(m, DagID) },
		func(m map[string]string) { delete(m, TaskID) },
		func(m map[string]string) { delete(m, RunID) },
		func(m map[string]string) { delete(m, RunID); m[ExecutionDate] = "2020-01-01T0000000000-x" },
		func(m map[string]string) { delete(m, TryNumber) },
		func(m map[string]string) { m[TryNumber] = "one" },
		func(m map[string]string) { m[TryNumber] = "-1" },
		func(m map[string]string) { m[MapIndex] = "x" },
		func(m map[string]string) { m[MapIndex] = "-1" },
		func(m map[string]string) { m[DagID] = "" },
	}
	for i, mutate := range bad {
		m := base()
		mutate(m)
		if _, err := ParseIdentity(m); err == nil {
			t.Errorf("case %d: %v parsed without error", i, m)
		}
	}
}

func BenchmarkSafeValue(b *testing.B) {
	id := "scheduled__2025-06-01T00:00:00+00:00"
	for i := 0; i < b.N; i++ {
		SafeValue(id)
	}
}

func TestExact(t *testing.T) {
	for v, want := range map[string]bool{
		"kpo_dag": true, "group.task": true, "a-b": true,
		"task-0123456ab": false, // could be another id's hashed label
		"_private":       false, "x-": false, "": false,
		"a_very_long_identifier_that_is_certainly_longer_than_sixty_three_characters": false,
	} {
		if got := Exact(v); got != want {
			t.Errorf("Exact(%q) = %v, want %v", v, got, want)
		}
	}
}

func TestRunIDCandidates(t *testing.T) {
	for _, id := range []string{
		"scheduled__2026-11-27T09:00:00+00:00",
		"manual__2026-11-27T09:00:00.123456+00:00",
		"backfill__2026-01-02T03:04:05-05:00",
		"manual__2026-11-27T09:00:00+00:00_AbCd1234",
		"asset_triggered__2026-11-27T09:00:00.5+05:30",
		"plain_run_id",
	} {
		got := RunIDCandidates(SafeValue(id))
		if len(got) == 0 || got[0] != id {
			t.Errorf("RunIDCandidates(SafeValue(%q)) = %q, want %q first", id, got, id)
		}
		// A hashed label that is label-safe may be a run id of its own.
		if l := SafeValue(id); l != id && (len(got) != 2 || got[1] != l) {
			t.Errorf("RunIDCandidates(%q) = %q, want the label itself second", l, got)
		}
	}
	// Ids that cannot be rebuilt give nothing rather than a guess.
	for _, id := range []string{
		"manual run with spaces",
		"scheduled__2026-11-27T09:00:00Z",
		"a_very_long_run_id_prefix_that_pushes_the_timestamp_out__2026-11-27T09:00:00+00:00",
	} {
		if got := RunIDCandidates(SafeValue(id)); len(got) != 1 || got[0] != SafeValue(id) {
			t.Errorf("RunIDCandidates(SafeValue(%q)) = %q, want only the label itself", id, got)
		}
	}
	// A wrong hash is refused even when the shape fits.
	if got := RunIDCandidates("scheduled__2026-11-27T0900000000-000000000"); len(got) != 1 {
		t.Errorf("forged hash accepted: %q", got)
	}
	if got := RunIDCandidates("_unsafe-000000000"); len(got) != 0 {
		t.Errorf("a label no id can equal gave %q", got)
	}
}
