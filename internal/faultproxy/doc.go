// Package faultproxy is a TCP proxy for tests that breaks PostgreSQL
// connections at chosen points, to produce for real the failures a healthy
// server never shows on demand: above all a COMMIT that the server applies but
// whose answer never reaches the client.
package faultproxy
