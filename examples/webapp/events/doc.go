// Package events is the wire form of the service's domain events: the
// public contract between the service and whoever consumes its stream
// (its own projector among them). Events are published to the JetStream
// stream Stream, on the subject Subject(type) (webapp.events.<type>), with
// the event's id as Nats-Msg-Id and a JSON body (Body).
package events
