package mysqlretry

import (
	"errors"

	"github.com/go-sql-driver/mysql"

	"github.com/uowkit/uowkit/retry"
)

// MySQL and MariaDB error numbers.
const (
	lockWaitTimeout = 1205 // ER_LOCK_WAIT_TIMEOUT
	deadlock        = 1213 // ER_LOCK_DEADLOCK
)

// Retryable reports whether err, anywhere in its chain, is a MySQL or MariaDB
// deadlock (1213) or lock wait timeout (1205) reported by
// github.com/go-sql-driver/mysql, and re-running is not refused: it is false,
// as for every classifier of a [retry.Policy], when err's tree also holds a
// context error or an error reporting RetryUnsafe() == true. Errors are
// matched by number, never by message. It is a [retry.Classifier].
func Retryable(err error) bool {
	return conflict(err) && guard.Retryable(err)
}

// guard applies package retry's refusals: a policy retries nothing that
// they rule out, whatever its classifiers say.
var guard = retry.Policy{Classifiers: []retry.Classifier{conflict}}

// conflict reports whether err's chain holds a deadlock or a lock wait
// timeout.
func conflict(err error) bool {
	var me *mysql.MySQLError
	return errors.As(err, &me) && (me.Number == deadlock || me.Number == lockWaitTimeout)
}

var _ retry.Classifier = Retryable
