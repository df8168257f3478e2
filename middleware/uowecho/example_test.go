package uowecho_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/uowkit/uowkit/internal/pgtest"
	"github.com/uowkit/uowkit/middleware/nethttp"
	"github.com/uowkit/uowkit/middleware/uowecho"
	"github.com/uowkit/uowkit/repo"
	"github.com/uowkit/uowkit/uow"
)

// A handler's returned error decides like the response Echo writes for it: an
// echo.HTTPError 409 rolls the insert back.
func ExampleTransaction() {
	db := pgtest.ExampleDB("echo_examples")
	defer db.Close()
	db.MustExec(`DROP TABLE IF EXISTS players; CREATE TABLE players (name text)`)

	e := echo.New()
	e.Use(uowecho.Transaction(uow.New(db)))
	e.POST("/players", func(c echo.Context) error {
		name := c.FormValue("name")
		ctx := c.Request().Context()
		if _, err := repo.From(ctx, db).ExecContext(ctx, `INSERT INTO players VALUES ($1)`, name); err != nil {
			return err
		}
		if name == "eleventh" {
			return echo.NewHTTPError(http.StatusConflict, "team is full")
		}
		return c.NoContent(http.StatusCreated)
	})

	for _, name := range []string{"first", "eleventh"} {
		req := httptest.NewRequest("POST", "/players", strings.NewReader("name="+name))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, req)
		fmt.Println(name, rec.Code)
	}
	var names []string
	_ = db.Select(&names, `SELECT name FROM players`)
	fmt.Println(names)
	// Output:
	// first 201
	// eleventh 409
	// [first]
}

// Per-request options and a dry run: the handler asks for a rollback with
// uow.SetRollbackOnly and still answers 201, and GET requests get read-only
// units.
func ExampleTransactionWithOptions() {
	db := pgtest.ExampleDB("echo_examples")
	defer db.Close()
	db.MustExec(`DROP TABLE IF EXISTS orders; CREATE TABLE orders (item text)`)

	e := echo.New()
	e.Use(uowecho.TransactionWithOptions(uow.New(db), nethttp.Options{
		UnitOptions: nethttp.ReadOnlySafeMethods,
		Timeout:     5 * time.Second,
	}))
	e.POST("/orders", func(c echo.Context) error {
		ctx := c.Request().Context()
		if _, err := repo.From(ctx, db).ExecContext(ctx, `INSERT INTO orders VALUES ($1)`, c.QueryParam("item")); err != nil {
			return err
		}
		if c.QueryParam("dry_run") != "" {
			if err := uow.SetRollbackOnly(ctx); err != nil {
				return err
			}
		}
		return c.NoContent(http.StatusCreated)
	})
	e.GET("/orders", func(c echo.Context) error {
		ctx := c.Request().Context()
		var items []string
		if err := repo.From(ctx, db).SelectContext(ctx, &items, `SELECT item FROM orders`); err != nil {
			return err
		}
		return c.JSON(http.StatusOK, items)
	})

	for _, target := range []string{"/orders?item=book&dry_run=1", "/orders?item=pen"} {
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, httptest.NewRequest("POST", target, nil))
		fmt.Println(target, rec.Code)
	}
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, httptest.NewRequest("GET", "/orders", nil))
	fmt.Print(rec.Code, " ", rec.Body.String())
	// Output:
	// /orders?item=book&dry_run=1 201
	// /orders?item=pen 201
	// 200 ["pen"]
}
