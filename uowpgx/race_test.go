package uowpgx_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/uowkit/uowkit/uowpgx"
)

// Every method of the rows is safe while the unit closes them from another
// goroutine (run with -race): the reader goes on with CommandTag and
// FieldDescriptions while the unit rolls back.
func TestPgxRowsMethodsAreSafeAgainstTheUnitsClose(t *testing.T) {
	_, pool, m := pgxFixture(t)
	ctx, u := m.Begin(context.Background())
	rows, err := uowpgx.From(ctx, pool).Query(ctx, `SELECT g, repeat('x', 8192), pg_sleep(0.001) FROM generate_series(1, 2000) AS g`)
	require.NoError(t, err)
	started := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; rows.Next(); i++ {
			_ = rows.CommandTag()
			_ = rows.FieldDescriptions()
			_ = rows.Conn()
			_ = rows.TypeMap()
			if i == 10 {
				close(started)
			}
		}
	}()
	<-started
	require.NoError(t, u.Rollback())
	<-done
}
