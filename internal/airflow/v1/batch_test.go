package v1

import (
	"fmt"
	"testing"

	"github.com/kpo-reaper/kpo-reaper/internal/airflow"
)

// One batch for a DAG's runs when their runs x tasks stay within the row
// budget, run by run when it would read far more rows than it was asked
// about; a server that cannot page leaves mapped task instances exact.
func TestBatchGroups(t *testing.T) {
	key := func(run, task string, mapIndex int) airflow.TIKey {
		return airflow.TIKey{DagID: "d", RunID: run, TaskID: task, MapIndex: mapIndex}
	}
	var square, diagonal []airflow.TIKey
	for r := range 5 {
		for k := range 4 {
			square = append(square, key(fmt.Sprint("r", r), fmt.Sprint("t", k), -1))
		}
		diagonal = append(diagonal, key(fmt.Sprint("r", r), fmt.Sprint("t", r), -1), key(fmt.Sprint("r", r), fmt.Sprint("u", r), -1))
	}
	mapped := []airflow.TIKey{key("r0", "m", 0), key("r0", "m", 1), key("r0", "t", -1), key("r1", "t", -1)}
	for _, tc := range []struct {
		name   string
		keys   []airflow.TIKey
		batch  airflow.Batch
		groups int
		keysIn int
	}{
		{"runs x tasks all asked", square, airflow.BatchPaged, 1, 20},
		{"each run its own tasks", diagonal, airflow.BatchPaged, 5, 10},
		{"mapped, paged", mapped, airflow.BatchPaged, 1, 4},
		{"mapped, unpaged", mapped, airflow.BatchUnpaged, 1, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gs := batchGroups(tc.keys, tc.batch)
			n := 0
			for _, g := range gs {
				n += len(g.keys)
				if len(g.runs)*len(g.tasks) > airflow.RowBudget(len(g.keys)) && len(g.runs) > 1 {
					t.Errorf("group %v x %v for %d keys exceeds the budget", g.runs, g.tasks, len(g.keys))
				}
			}
			if len(gs) != tc.groups || n != tc.keysIn {
				t.Fatalf("%d groups of %d keys, want %d of %d", len(gs), n, tc.groups, tc.keysIn)
			}
		})
	}
}
