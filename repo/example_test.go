package repo_test

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/jmoiron/sqlx"

	"github.com/uowkit/uowkit/internal/pgtest"
	"github.com/uowkit/uowkit/repo"
	"github.com/uowkit/uowkit/uow"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// Teams is a repository: it keeps its pool and asks repo.From for the
// querier of each call.
type Teams struct{ db *sqlx.DB }

func (r Teams) Add(ctx context.Context, name string) error {
	_, err := repo.From(ctx, r.db).ExecContext(ctx, `INSERT INTO teams (name) VALUES ($1)`, name)
	return err
}

func (r Teams) Count(ctx context.Context) (n int, err error) {
	err = repo.From(ctx, r.db).GetContext(ctx, &n, `SELECT count(*) FROM teams`)
	return n, err
}

// The same repository method runs in the unit active in the context, or on
// the pool without one.
func ExampleFrom() {
	db := pgtest.ExampleDB("repo_examples")
	defer db.Close()
	db.MustExec(`DROP TABLE IF EXISTS teams; CREATE TABLE teams (id serial PRIMARY KEY, name text)`)
	teams := Teams{db: db}
	m := uow.New(db)

	ctx, u := m.Begin(context.Background())
	_ = teams.Add(ctx, "Reds")
	inside, _ := teams.Count(ctx)
	outside, _ := teams.Count(context.Background())
	_ = u.Rollback()
	after, _ := teams.Count(context.Background())

	fmt.Println(inside, outside, after)
	// Output: 1 0 0
}
