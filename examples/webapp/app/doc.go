// Package app wires the example service together: database, unit-of-work
// manager, repositories, service, event bus and HTTP.
package app
