package uowpgx

import (
	"slices"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/uowkit/uowkit/internal/seam"
	"github.com/uowkit/uowkit/uow"
)

// Replicas configures the streaming replicas of a pool source
// (WithReplicas); the fields mean what uow.Replicas' do.
type Replicas struct {
	// Pools are the replicas, hot standbys of the source's primary.
	Pools []*pgxpool.Pool
	// MaxWait bounds the wait of a read-only unit with a read-your-writes
	// position for a replica to catch up (see uow.Replicas).
	MaxWait time.Duration
	// Cooldown is how long a replica that could not be reached is
	// skipped; default 5 seconds.
	Cooldown time.Duration
}

// WithReplicas gives the pool source primary (added with WithPool; the
// option may come before or after) streaming replicas, as uow.WithReplicas
// does for a database/sql source: read-only units run on a replica,
// round-robin, with read-your-writes under a uow.Consistency, and fall back
// to the primary (reported to the Observer) when none is usable. It panics,
// when the manager is made, for a nil primary, no or nil replicas, or a
// primary that is not a source of the manager.
func WithReplicas(primary *pgxpool.Pool, r Replicas) uow.ManagerOption {
	if primary == nil || len(r.Pools) == 0 || slices.Contains(r.Pools, nil) {
		panic("uowpgx: WithReplicas: nil primary, or no replicas, or a nil one")
	}
	backends := make([]seam.Backend, len(r.Pools))
	for i, p := range r.Pools {
		backends[i] = backend{p}
	}
	return seam.AddReplicas(primary, backends, r.MaxWait, r.Cooldown).(uow.ManagerOption)
}

// Key returns what identifies the backend's pool as a source.
func (b backend) Key() any { return b.pool }
