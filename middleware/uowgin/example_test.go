package uowgin_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/uowkit/uowkit/internal/pgtest"
	"github.com/uowkit/uowkit/middleware/nethttp"
	"github.com/uowkit/uowkit/middleware/uowgin"
	"github.com/uowkit/uowkit/repo"
	"github.com/uowkit/uowkit/uow"
)

// The status a handler sends decides: a 409 from AbortWithStatusJSON rolls
// the insert back.
func ExampleTransaction() {
	db := pgtest.ExampleDB("gin_examples")
	defer db.Close()
	db.MustExec(`DROP TABLE IF EXISTS players; CREATE TABLE players (name text)`)

	r := gin.New()
	r.Use(gin.Recovery(), uowgin.Transaction(uow.New(db)))
	r.POST("/players", func(c *gin.Context) {
		name := c.PostForm("name")
		ctx := c.Request.Context()
		if _, err := repo.From(ctx, db).ExecContext(ctx, `INSERT INTO players VALUES ($1)`, name); err != nil {
			_ = c.Error(err) // recorded, nothing written: 500, rolled back
			return
		}
		if name == "eleventh" {
			c.AbortWithStatusJSON(http.StatusConflict, gin.H{"error": "team is full"})
			return
		}
		c.Status(http.StatusCreated)
	})

	for _, name := range []string{"first", "eleventh"} {
		req := httptest.NewRequest("POST", "/players", strings.NewReader("name="+name))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		rec := httptest.NewRecorder()
		r.ServeHTTP(rec, req)
		fmt.Println(strings.TrimSpace(fmt.Sprint(name, " ", rec.Code, " ", rec.Body.String())))
	}
	var names []string
	_ = db.Select(&names, `SELECT name FROM players`)
	fmt.Println(names)
	// Output:
	// first 201
	// eleventh 409 {"error":"team is full"}
	// [first]
}

// Per-request options, repositories given c itself as their context (the
// engine's ContextWithFallback), and a failed COMMIT answered in the
// application's JSON: the deferred check fails at COMMIT, after the handler
// sent 201, and the client gets 500 instead.
func ExampleTransactionWithOptions() {
	db := pgtest.ExampleDB("gin_examples")
	defer db.Close()
	db.MustExec(`DROP TABLE IF EXISTS orders; CREATE TABLE orders (item text);
CREATE FUNCTION no_lemons() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF NEW.item = 'lemon' THEN RAISE EXCEPTION 'no lemons'; END IF;
	RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER no_lemons AFTER INSERT ON orders
	DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION no_lemons();`)
	defer db.MustExec(`DROP TABLE orders; DROP FUNCTION no_lemons()`)

	r := gin.New()
	r.ContextWithFallback = true // c carries the request's unit too
	r.Use(gin.Recovery(), uowgin.TransactionWithOptions(uow.New(db), nethttp.Options{
		UnitOptions:  nethttp.ReadOnlySafeMethods,
		Timeout:      5 * time.Second,
		ErrorHandler: func(*http.Request, error) {}, // default: logged with slog
		FailureResponse: func(w http.ResponseWriter, _ *http.Request, status int, _ error) {
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(gin.H{"error": "not saved", "status": status})
		},
	}))
	r.POST("/orders", func(c *gin.Context) {
		if _, err := repo.From(c, db).ExecContext(c, `INSERT INTO orders VALUES ($1)`, c.Query("item")); err != nil {
			_ = c.Error(err)
			return
		}
		c.JSON(http.StatusCreated, gin.H{"item": c.Query("item")})
	})
	r.GET("/orders", func(c *gin.Context) {
		var items []string
		if err := repo.From(c, db).SelectContext(c, &items, `SELECT item FROM orders`); err != nil {
			_ = c.Error(err)
			return
		}
		c.JSON(http.StatusOK, items)
	})

	for _, target := range []string{"/orders?item=pen", "/orders?item=lemon"} {
		rec := httptest.NewRecorder()
		r.ServeHTTP(rec, httptest.NewRequest("POST", target, nil))
		fmt.Println(target, rec.Code, strings.TrimSpace(rec.Body.String()))
	}
	rec := httptest.NewRecorder()
	r.ServeHTTP(rec, httptest.NewRequest("GET", "/orders", nil))
	fmt.Println(rec.Code, rec.Body.String())
	// Output:
	// /orders?item=pen 201 {"item":"pen"}
	// /orders?item=lemon 500 {"error":"not saved","status":500}
	// 200 ["pen"]
}
