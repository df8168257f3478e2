// Package repo is what repositories use to find their database handle.
//
// # Finding the active transaction
//
// A repository keeps the *sqlx.DB it works on and asks [From] for the querier
// of each call:
//
//	func (r *Teams) ByID(ctx context.Context, id int64) (Team, error) {
//		var t Team
//		err := repo.From(ctx, r.db).GetContext(ctx, &t, `SELECT id, name, capacity FROM teams WHERE id = $1`, id)
//		return t, err
//	}
//
// Inside a unit of work (begun by [uow.Manager.Begin], [uow.Manager.Do] or the
// HTTP middleware) the call runs on the unit's lazily begun transaction on
// that database; outside one it runs on the pool.
//
// # Explicit binding
//
// Repositories built by a [uow.Runner] constructor receive a [uow.Handle]
// instead, which satisfies [Querier] and [Tx] directly.
//
// # Requiring a transaction
//
// A method that needs several statements to be atomic takes a [Tx] (only a
// unit's handle satisfies it, so passing a *sqlx.DB does not compile) or calls
// [TxFrom], which fails with [uow.ErrNoUnit] outside a unit.
package repo
