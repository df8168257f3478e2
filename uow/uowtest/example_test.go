package uowtest_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/uowkit/uowkit/uow"
	"github.com/uowkit/uowkit/uow/uowtest"
)

// Greetings is an in-memory repository.
type Greetings struct{ saved []string }

// Greeter is a service under test: it depends on uow.Transactor only.
type Greeter struct{ tx uow.Transactor[*Greetings] }

func (g Greeter) Greet(ctx context.Context, name string) error {
	return g.tx.Do(ctx, func(ctx context.Context, r *Greetings) error {
		if name == "" {
			return errors.New("who?")
		}
		r.saved = append(r.saved, name)
		return uow.AfterCommit(ctx, func(context.Context) error {
			fmt.Println("sent hello to", name)
			return nil
		})
	})
}

// The fake records how each call ended and runs hooks as a real commit would.
func ExampleFake() {
	repo := &Greetings{}
	fake := uowtest.New(repo)
	g := Greeter{tx: fake}

	_ = g.Greet(context.Background(), "Ann")
	_ = g.Greet(context.Background(), "")
	fake.FailNextCommit(nil)
	err := g.Greet(context.Background(), "Bob")

	fmt.Println(err)
	fmt.Println("commits:", fake.Commits(), "rollbacks:", fake.Rollbacks())
	// Output:
	// sent hello to Ann
	// uowtest: commit failed
	// commits: 1 rollbacks: 2
}
