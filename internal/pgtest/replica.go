package pgtest

import (
	"database/sql"
	"fmt"
	"net/url"
	"os"
	execpkg "os/exec"
	"strings"
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
	db, err := sql.Open("postgres", replicaN(n))
	if err == nil {
		defer db.Close()
		var standby bool
		var status sql.NullString
		err = db.QueryRow(`SELECT pg_is_in_recovery(), (SELECT status FROM pg_stat_wal_receiver)`).Scan(&standby, &status)
		switch {
		case err != nil:
		case !standby:
			err = fmt.Errorf("it is not in recovery")
		case status.String != "streaming":
			err = fmt.Errorf("it is not streaming from the primary (wal receiver: %q)", status.String)
		}
	}
	if err == nil {
		return
	}
	why := fmt.Sprintf("pgtest: no streaming replica at %s (%v); run scripts/pg-replica.sh or set %s", redact(replicaN(n)), err, replicaURLs[n].env)
	if os.Getenv("CI") != "" {
		tb.Fatal(why)
	}
	tb.Skip(why)
}

// ReplicaAdminURL returns the URL of the replica's maintenance database.
func ReplicaAdminURL(tb testing.TB) string {
	tb.Helper()
	requireReplica(tb)
	return replicaAdminURL()
}

// StopReplica stops the local replica cluster (scripts/pg-replica.sh's) for
// the rest of the test, and starts it again at cleanup, waiting until it is
// back in hot standby. It needs the local cluster: with EnvReplicaURL set it
// skips the test (fails it under CI).
func StopReplica(tb testing.TB) {
	tb.Helper()
	requireReplica(tb)
	if os.Getenv(EnvReplicaURL) != "" {
		why := "pgtest: StopReplica needs the local replica cluster, not " + EnvReplicaURL
		if os.Getenv("CI") != "" {
			tb.Fatal(why)
		}
		tb.Skip(why)
	}
	version, err := clusterVersion()
	if err != nil {
		tb.Fatal(err)
	}
	ctl := func(action string) error {
		out, err := execpkg.Command("pg_ctlcluster", "--skip-systemctl-redirect", version, "replica", action, "-m", "fast").CombinedOutput()
		if err != nil {
			return fmt.Errorf("pg_ctlcluster %s replica %s: %v: %s", version, action, err, out)
		}
		return nil
	}
	if err := ctl("stop"); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		out, err := execpkg.Command("pg_ctlcluster", "--skip-systemctl-redirect", version, "replica", "start").CombinedOutput()
		if err != nil {
			tb.Errorf("pgtest: restarting the replica: %v: %s", err, out)
			return
		}
		deadline := time.Now().Add(60 * time.Second)
		for {
			db, err := sql.Open("postgres", replicaAdminURL())
			if err == nil {
				var standby bool
				var status sql.NullString
				err = db.QueryRow(`SELECT pg_is_in_recovery(), (SELECT status FROM pg_stat_wal_receiver)`).Scan(&standby, &status)
				db.Close()
				if err == nil && standby && status.String == "streaming" {
					return
				}
			}
			if time.Now().After(deadline) {
				tb.Errorf("pgtest: the replica is not back, streaming in hot standby, after 60 s: %v", err)
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
}

func clusterVersion() (string, error) {
	entries, err := os.ReadDir("/etc/postgresql")
	if err != nil {
		return "", fmt.Errorf("pgtest: no local PostgreSQL clusters: %w", err)
	}
	var last string
	for _, e := range entries {
		if _, err := os.Stat("/etc/postgresql/" + e.Name() + "/replica"); err == nil {
			last = e.Name()
		}
	}
	if last == "" {
		return "", fmt.Errorf("pgtest: no local replica cluster (scripts/pg-replica.sh makes one)")
	}
	return last, nil
}
