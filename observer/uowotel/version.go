package uowotel

import (
	"runtime/debug"
	"sync"
)

// ScopeName is the instrumentation scope name of the tracer and the meter
// the observer uses: the module's import path, as OpenTelemetry's contrib
// instrumentations name theirs.
const ScopeName = "github.com/uowkit/uowkit/observer/uowotel"

// Version returns the version of this module the program was built with, as
// the Go toolchain recorded it (v1.2.3, or a pseudo-version), or "" when the
// module was built from a local directory (a workspace, a replace directive)
// and so has no version: the instrumentation scope then carries none, rather
// than one that might be false.
func Version() string { return version() }

var version = sync.OnceValue(func() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	for _, d := range info.Deps {
		if d.Path != ScopeName {
			continue
		}
		if d.Replace != nil {
			d = d.Replace // its Version is "" for a directory
		}
		if d.Version == "(devel)" { // a workspace module
			return ""
		}
		return d.Version
	}
	return "" // the main module (its own tests), or not linked as a module
})
