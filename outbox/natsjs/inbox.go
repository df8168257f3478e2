package natsjs

import (
	"context"

	"github.com/uowkit/uowkit/outbox"
	"github.com/uowkit/uowkit/uow"
)

// InboxHandler returns a handler for [Consume] that applies each message
// once through in: in one unit of work of m (with opts) it records the
// message's id in the inbox and calls fn, so that fn's changes and the
// record commit together (see [outbox.Inbox.Handle]). A message whose id
// the inbox already has (a redelivery after a lost acknowledgement, a
// relay's republish after the stream's duplicate window) is skipped
// without calling fn, and acknowledged. fn's error, or the commit's, leaves
// nothing recorded; Consume then gives the message back to be delivered
// again.
//
// fn must do its work through the unit in its context (repo.From, or
// uow.FromContext(ctx).On(db)) on the inbox's database: work done anywhere
// else does not commit with the inbox's record.
func InboxHandler(in *outbox.Inbox, m *uow.Manager, fn func(ctx context.Context, msg outbox.Message) error, opts ...uow.Option) func(context.Context, outbox.Message) error {
	if in == nil || m == nil || fn == nil {
		panic("natsjs: InboxHandler with a nil inbox, manager or function")
	}
	return func(ctx context.Context, msg outbox.Message) error {
		_, err := in.Handle(ctx, m, msg.ID, func(ctx context.Context) error { return fn(ctx, msg) }, opts...)
		return err
	}
}
