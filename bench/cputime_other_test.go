//go:build !unix

package bench_test

import "time"

// cpuTime is not available here: no cpu-ns/op metric is reported.
func cpuTime() (time.Duration, bool) { return 0, false }
