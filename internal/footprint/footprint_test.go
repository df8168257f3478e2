package footprint_test

import (
	"database/sql"
	"os/exec"
	"strings"
	"testing"

	_ "github.com/uowkit/uowkit/middleware/nethttp"
	_ "github.com/uowkit/uowkit/repo"
	_ "github.com/uowkit/uowkit/retry"
	_ "github.com/uowkit/uowkit/uow"
)

// core is what an application on database/sql imports.
var core = []string{
	"github.com/uowkit/uowkit/uow",
	"github.com/uowkit/uowkit/repo",
	"github.com/uowkit/uowkit/retry",
	"github.com/uowkit/uowkit/middleware/nethttp",
}

func TestCoreRegistersNoDriver(t *testing.T) {
	if d := sql.Drivers(); len(d) != 0 {
		t.Fatalf("importing the core registered database drivers %v", d)
	}
}

func TestCoreLinksNothingButSqlx(t *testing.T) {
	args := append([]string{"list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}"}, core...)
	out, err := exec.Command("go", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, p := range strings.Fields(string(out)) {
		switch {
		case strings.HasPrefix(p, "github.com/uowkit/uowkit/"),
			strings.HasPrefix(p, "github.com/jmoiron/sqlx"):
		default:
			t.Errorf("the core links %s", p)
		}
	}
}
