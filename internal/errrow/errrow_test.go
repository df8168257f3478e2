package errrow_test

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"go.uber.org/goleak"

	"github.com/uowkit/uowkit/internal/errrow"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestRowFailsWithTheError(t *testing.T) {
	boom := errors.New("boom")
	row := errrow.New(boom)
	assert.Same(t, boom, row.Err())
	var v int
	assert.Same(t, boom, row.Scan(&v))
	assert.Same(t, boom, row.MapScan(map[string]any{}))
}
