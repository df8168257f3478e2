// Package httpapi is the HTTP interface: Echo handlers that decode requests,
// call the service and encode responses, and the one place where application
// errors become HTTP statuses.
package httpapi
