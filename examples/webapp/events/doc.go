// Package events is an in-process event bus: subscribers receive domain
// events after the unit of work that recorded them has committed.
package events
