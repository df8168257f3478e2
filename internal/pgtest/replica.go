package pgtest

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	execpkg "os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// EnvReplicaURL and EnvReplica2URL name the environment variables with the
// URLs of two streaming replicas of the server (their maintenance
// databases); defaults postgres://postgres@127.0.0.1:5433/postgres and
// :5434, the replicas scripts/pg-replica.sh starts (.ci/run runs it twice).
const (
	EnvReplicaURL  = "UOWKIT_REPLICA_URL"
	EnvReplica2URL = "UOWKIT_REPLICA2_URL"
)

var replicaURLs = [2]struct{ env, def string }{
	{EnvReplicaURL, "postgres://postgres@127.0.0.1:5433/postgres?sslmode=disable"},
	{EnvReplica2URL, "postgres://postgres@127.0.0.1:5434/postgres?sslmode=disable"},
}

func replicaAdminURL() string { return replicaN(0) }

func replicaN(n int) string {
	if u := os.Getenv(replicaURLs[n].env); u != "" {
		return u
	}
	return replicaURLs[n].def
}

// ReplicaURL returns the URL of tag's database (see URL) on the first
// replica, once the replica has replayed its creation. It skips the test
// (fails it under CI) when no replica in hot standby streams there.
func ReplicaURL(tb testing.TB, tag string) string {
	tb.Helper()
	return replicaDB(tb, 0, tag)
}

// Replica2URL is ReplicaURL on the second replica.
func Replica2URL(tb testing.TB, tag string) string {
	tb.Helper()
	return replicaDB(tb, 1, tag)
}

func replicaDB(tb testing.TB, n int, tag string) string {
	tb.Helper()
	primary := URL(tb, tag)
	p, err := url.Parse(primary)
	if err != nil {
		tb.Fatal(err)
	}
	requireReplicaN(tb, n)
	u, err := withDatabase(replicaN(n), strings.TrimPrefix(p.Path, "/"))
	if err != nil {
		tb.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := ping(u)
		if err == nil {
			return u
		}
		if time.Now().After(deadline) {
			tb.Fatalf("pgtest: the replica does not have database %s after 30 s: %v", p.Path, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// requireReplica skips tb, or fails it under CI, when the first replica
// does not stream in hot standby.
func requireReplica(tb testing.TB) {
	tb.Helper()
	requireReplicaN(tb, 0)
}

func requireReplicaN(tb testing.TB, n int) {
	tb.Helper()
	err := streaming(replicaN(n))
	if err == nil {
		return
	}
	why := fmt.Sprintf("pgtest: no streaming replica at %s (%v); run scripts/pg-replica.sh or set %s", redact(replicaN(n)), err, replicaURLs[n].env)
	if os.Getenv("CI") != "" {
		tb.Fatal(why)
	}
	tb.Skip(why)
}

// streaming returns nil when the server at u is a replica in hot standby
// that streams from its primary, and why not otherwise.
func streaming(u string) error {
	db, err := sql.Open("postgres", u)
	if err != nil {
		return err
	}
	defer db.Close()
	var standby bool
	var status sql.NullString
	err = db.QueryRow(`SELECT pg_is_in_recovery(), (SELECT status FROM pg_stat_wal_receiver)`).Scan(&standby, &status)
	switch {
	case err != nil:
		return err
	case !standby:
		return fmt.Errorf("it is not in recovery")
	case status.String != "streaming":
		return fmt.Errorf("it is not streaming from the primary (wal receiver: %q)", status.String)
	}
	return nil
}

// ReplicaAdminURL returns the URL of the replica's maintenance database.
func ReplicaAdminURL(tb testing.TB) string {
	tb.Helper()
	requireReplica(tb)
	return replicaAdminURL()
}

// StopReplica2 stops the second local replica cluster
// (scripts/pg-replica.sh's "replica2") for the rest of the test, and starts
// it again at cleanup, waiting until it streams in hot standby again. Only
// package uow's tests use the second replica: packages run in parallel, and
// the others (and benchmarks) use the first, which nothing stops. It needs
// the local cluster: with EnvReplica2URL set it skips the test (fails it
// under CI).
func StopReplica2(tb testing.TB) {
	tb.Helper()
	requireReplicaN(tb, 1)
	if os.Getenv(EnvReplica2URL) != "" {
		why := "pgtest: StopReplica2 needs the local replica cluster, not " + EnvReplica2URL
		if os.Getenv("CI") != "" {
			tb.Fatal(why)
		}
		tb.Skip(why)
	}
	const cluster = "replica2"
	version, err := clusterVersion(cluster)
	if err != nil {
		tb.Fatal(err)
	}
	out, err := execpkg.Command("pg_ctlcluster", "--skip-systemctl-redirect", version, cluster, "stop", "-m", "fast").CombinedOutput()
	if err != nil {
		tb.Fatalf("pg_ctlcluster %s %s stop: %v: %s", version, cluster, err, out)
	}
	tb.Cleanup(func() {
		out, err := execpkg.Command("pg_ctlcluster", "--skip-systemctl-redirect", version, cluster, "start").CombinedOutput()
		if err != nil {
			tb.Errorf("pgtest: restarting %s: %v: %s", cluster, err, out)
			return
		}
		deadline := time.Now().Add(60 * time.Second)
		for {
			err := streaming(replicaN(1))
			if err == nil {
				return
			}
			if time.Now().After(deadline) {
				tb.Errorf("pgtest: %s is not back, streaming in hot standby, after 60 s: %v", cluster, err)
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
}

func clusterVersion(cluster string) (string, error) {
	entries, err := os.ReadDir("/etc/postgresql")
	if err != nil {
		return "", fmt.Errorf("pgtest: no local PostgreSQL clusters: %w", err)
	}
	var last string
	for _, e := range entries {
		if _, err := os.Stat("/etc/postgresql/" + e.Name() + "/" + cluster); err == nil {
			last = e.Name()
		}
	}
	if last == "" {
		return "", fmt.Errorf("pgtest: no local cluster %s (scripts/pg-replica.sh makes it)", cluster)
	}
	return last, nil
}

// PauseReplay pauses the first replica's replay of the primary's WAL
// (pg_wal_replay_pause) until resume is called or the test ends. Tests of
// several packages pause it, and packages run in parallel: a session
// advisory lock on the primary, held from before the pause until after the
// resume, lets one test at a time have it paused.
func PauseReplay(tb testing.TB) (resume func()) {
	tb.Helper()
	requireReplica(tb)
	primary, err := sql.Open("postgres", adminURL)
	if err != nil {
		tb.Fatal(err)
	}
	lock, err := primary.Conn(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	const key = 7_270_726_001 // "pgtest pause replay"
	if _, err := lock.ExecContext(context.Background(), `SELECT pg_advisory_lock($1)`, key); err != nil {
		tb.Fatal(err)
	}
	replica, err := sql.Open("postgres", replicaAdminURL())
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := replica.Exec(`SELECT pg_wal_replay_pause()`); err != nil {
		tb.Fatal(err)
	}
	var once sync.Once
	resume = func() {
		once.Do(func() {
			if _, err := replica.Exec(`SELECT pg_wal_replay_resume()`); err != nil {
				tb.Errorf("pgtest: resuming replay: %v", err)
			}
			replica.Close()
			_, _ = lock.ExecContext(context.Background(), `SELECT pg_advisory_unlock($1)`, key)
			lock.Close()
			primary.Close()
		})
	}
	tb.Cleanup(resume)
	return resume
}
