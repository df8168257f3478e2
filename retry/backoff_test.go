package retry

import (
	"context"
	"math"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// conflict is a serialization failure, as any driver with a SQLState()
// method reports it.
type conflict struct{}

func (conflict) Error() string    { return "serialization failure" }
func (conflict) SQLState() string { return "40001" }

func TestDelayIsFullJitterUnderACappedCeiling(t *testing.T) {
	t.Parallel()
	p := Policy{BaseDelay: 10 * time.Millisecond, MaxDelay: 80 * time.Millisecond}
	assert.Equal(t, 10*time.Millisecond, p.ceiling(1))
	assert.Equal(t, 20*time.Millisecond, p.ceiling(2))
	assert.Equal(t, 80*time.Millisecond, p.ceiling(4))
	assert.Equal(t, 80*time.Millisecond, p.ceiling(1000), "no overflow")
	for attempt := 1; attempt <= 6; attempt++ {
		var below, above bool
		for range 2000 {
			d := p.delay(attempt)
			require.GreaterOrEqual(t, d, time.Duration(0))
			require.LessOrEqual(t, d, p.ceiling(attempt))
			below = below || d < p.ceiling(attempt)/4
			above = above || d > p.ceiling(attempt)*3/4
		}
		assert.True(t, below && above, "delays spread over [0, ceiling]")
	}
	assert.Equal(t, DefaultBaseDelay, Policy{}.ceiling(1))
	assert.Equal(t, DefaultMaxDelay, Policy{}.ceiling(1000))
	assert.Equal(t, time.Hour, Policy{BaseDelay: time.Hour}.ceiling(3), "an unset MaxDelay does not cut a larger BaseDelay")

	// Extreme values neither overflow nor panic.
	huge := Policy{BaseDelay: math.MaxInt64 / 3, MaxDelay: math.MaxInt64}
	for _, attempt := range []int{math.MinInt, 0, 1, 2, 3, 64, math.MaxInt} {
		c := huge.ceiling(attempt)
		require.Positive(t, c, "attempt %d", attempt)
		d := huge.delay(attempt)
		require.True(t, d >= 0 && d <= c, "attempt %d: %v", attempt, d)
	}
	assert.Equal(t, time.Duration(math.MaxInt64), huge.ceiling(math.MaxInt))
}

func TestAttempts(t *testing.T) {
	t.Parallel()
	for maxAttempts, want := range map[int]int{-1: DefaultMaxAttempts, 0: DefaultMaxAttempts, 1: 1, 7: 7} {
		assert.Equal(t, want, Policy{MaxAttempts: maxAttempts}.attempts(), "MaxAttempts %d", maxAttempts)
	}
}

// TestCancelDuringBackoff cancels while Do is asleep in its backoff, not
// before: in a synctest bubble, synctest.Wait returns only once Do's
// goroutine is durably blocked in its sleep, and the fake clock does not
// advance while the test goroutine runs. A backoff that ignored the
// context (a plain time.Sleep) would still be asleep after the cancellation.
func TestCancelDuringBackoff(t *testing.T) {
	for name, wait := range map[string]func(ctx context.Context, p Policy) error{
		"Policy.Do": func(ctx context.Context, p Policy) error {
			return p.Do(ctx, func(context.Context, int) error { return conflict{} })
		},
		"sleep": func(ctx context.Context, _ Policy) error { return sleep(ctx, time.Hour) },
	} {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ctx, cancel := context.WithCancel(context.Background())
				// However short a delay the jitter picks, the fake clock
				// does not move while this goroutine runs or waits in
				// synctest.Wait: only the cancellation can end the sleep.
				p := Policy{BaseDelay: time.Hour, MaxDelay: time.Hour, MaxAttempts: 2}
				var err error
				done := make(chan struct{})
				go func() { err = wait(ctx, p); close(done) }()
				synctest.Wait() // asleep in the backoff
				select {
				case <-done:
					t.Fatalf("returned before the cancellation: %v", err)
				default:
				}
				start := time.Now()
				cancel()
				synctest.Wait()
				select {
				case <-done:
				default:
					t.Fatal("still asleep after the cancellation")
				}
				assert.Zero(t, time.Since(start), "no fake time passed: the cancellation ended the wait")
				require.ErrorIs(t, err, context.Canceled)
				if name == "Policy.Do" {
					require.ErrorIs(t, err, conflict{}, "the last attempt's error is kept")
				}
			})
		})
	}
}
