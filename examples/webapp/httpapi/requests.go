package httpapi

import (
	"crypto/rand"
	"log/slog"
	"time"

	"github.com/labstack/echo/v4"
)

// maxRequestID bounds the length of a request id the client sends.
const maxRequestID = 128

// RequestID gives every request an id, in its X-Request-Id header: the
// client's own, when it sends a usable one (1 to 128 printable ASCII
// characters, no space), else a fresh random one. It sets the header on
// the request, where the unit middleware reads it into the units' log lines
// (uow.NewSlogObserver's request.id) and AccessLog into the request's line,
// and on the response, so that a client can quote it. Install it before
// (outside) AccessLog and the unit middleware.
func RequestID() echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			r := c.Request()
			id := r.Header.Get(echo.HeaderXRequestID)
			if !usableID(id) {
				id = rand.Text()
				r.Header.Set(echo.HeaderXRequestID, id)
			}
			c.Response().Header().Set(echo.HeaderXRequestID, id)
			return next(c)
		}
	}
}

// usableID reports whether a client's request id can go into the logs as
// it is.
func usableID(id string) bool {
	if id == "" || len(id) > maxRequestID {
		return false
	}
	for i := range len(id) {
		if id[i] <= ' ' || id[i] > '~' {
			return false
		}
	}
	return true
}

// AccessLog logs one line per request, at Info once it has been answered:
// its method, route (the pattern it matched, such as /teams/:id; empty when
// none did), path, final status (the one the client got: a failed commit's
// 500 replaces the handler's 201), response size, duration and request id
// (see RequestID). Install it after RequestID and before (outside) Recover
// and the unit middleware, so that it sees their answers.
func AccessLog(log *slog.Logger) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			start := time.Now()
			err := next(c)
			if err != nil {
				// Not answered yet (the middlewares inside answer their
				// errors themselves): answer now, so that the status is
				// the one the client gets.
				c.Error(err)
			}
			r, res := c.Request(), c.Response()
			log.LogAttrs(r.Context(), slog.LevelInfo, "request",
				slog.String("method", r.Method),
				slog.String("route", c.Path()),
				slog.String("path", r.URL.Path),
				slog.Int("status", res.Status),
				slog.Int64("size", res.Size),
				slog.Duration("duration", time.Since(start)),
				slog.String("id", r.Header.Get(echo.HeaderXRequestID)))
			return nil
		}
	}
}
