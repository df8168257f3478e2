package uow

import (
	"context"
	"fmt"
	"time"

	"github.com/uowkit/uowkit/internal/seam"
)

// This file plugs adapter modules (uowpgx) into the seam: a source of their
// own kind, and their handles' statements run like the Handle's.

func init() {
	seam.AddReplicas = func(key any, backends []seam.Backend, maxWait, cooldown time.Duration) any {
		rb := make([]replicaBackend, len(backends))
		for i, b := range backends {
			r, ok := b.(replicaBackend)
			if !ok {
				panic("uow: WithReplicas: a replica's backend cannot run statements outside a unit")
			}
			rb[i] = r
		}
		return withReplicas(key, rb, maxWait, cooldown)
	}
	seam.AddSource = func(name string, key any, b seam.Backend) any {
		return ManagerOption(func(m *Manager) {
			switch {
			case name == "":
				panic("uow: WithSource: empty name")
			case key == nil || b == nil:
				panic(fmt.Sprintf("uow: WithSource(%q): nil pool", name))
			}
			m.checkNew(name, key)
			m.addSource(&source{name: name, key: key, backend: b})
		})
	}
	seam.Run = func(unit any, key any, ctx context.Context, cursor bool, f func(ctx context.Context, tx seam.Tx) (seam.Cursor, error)) error {
		u, _ := unit.(*Unit)
		if u == nil {
			return ErrNoUnit
		}
		if u.err != nil {
			return u.err
		}
		s := u.m.byKey[key]
		if s == nil {
			return fmt.Errorf("%w: a pool the manager was not given", ErrUnknownSource)
		}
		return u.run(ctx, s, nil, cursor, func(ctx context.Context, b *branch) error {
			c, err := f(ctx, b.tx)
			if c != nil && c.Open() {
				b.cursors = append(b.cursors, c)
			}
			return err
		})
	}
	seam.Active = func(unit any) bool {
		u, _ := unit.(*Unit)
		if u == nil || u.err != nil {
			return false
		}
		u.t.mu.Lock()
		defer u.t.mu.Unlock()
		return u.activeLocked() == nil
	}
	seam.Fail = func(unit any, key any, err error) {
		u, _ := unit.(*Unit)
		if u == nil || u.err != nil || err == nil {
			return
		}
		if s := u.m.byKey[key]; s != nil && s.backend.Fatal(err) {
			u.fail(err)
		}
	}
}
