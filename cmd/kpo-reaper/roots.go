package main

// The container image has no base and so no /etc/ssl: this bundle (Mozilla's
// roots) is what crypto/x509 falls back to when the system has no CA roots.
// Where the system has them they are used instead, and airflow.tls.caFile
// still adds its CA to whichever pool that is.
import _ "golang.org/x/crypto/x509roots/fallback"
