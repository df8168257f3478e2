// Package uowtest provides a fake uow.Transactor for unit tests of services.
//
// # The fake
//
// [New] returns a [Fake] that runs each callback with the repositories it was
// given (in-memory fakes, usually) inside a real unit that has no database.
// So uow.AfterCommit, uow.AfterRollback and uow.SetRollbackOnly behave as in
// production: after-commit hooks run only when the call commits.
//
// [Fake.Calls], [Fake.Commits] and [Fake.Rollbacks] tell how each call ended;
// [Fake.FailNextCommit] makes the next commit fail, to test what a service
// does when its work is not saved.
package uowtest
