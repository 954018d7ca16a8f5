// Package authtype names the ways kpo-reaper authenticates to Airflow
// (airflow.auth.type). It is the one list that the configuration's
// validation, the HTTP transport and the command line read; it imports
// nothing, so every one of them can.
package authtype

import "slices"

// The types, as airflow.auth.type spells them.
const (
	None       = "none"
	Basic      = "basic"
	Bearer     = "bearer"
	AirflowJWT = "airflow-jwt"
	Google     = "google"
	// MWAA signs each call with AWS SigV4 inside the AWS SDK, beneath the
	// HTTP transport, which then adds nothing (None).
	MWAA = "mwaa"
)

// All lists every type, in the order messages and documentation give them.
func All() []string {
	return []string{None, Basic, Bearer, AirflowJWT, Google, MWAA}
}

// HTTP lists the types the HTTP transport authenticates itself: All
// without MWAA.
func HTTP() []string {
	return slices.DeleteFunc(All(), func(t string) bool { return t == MWAA })
}
