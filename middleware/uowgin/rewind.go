package uowgin

import (
	"reflect"
	"unsafe"

	"github.com/gin-gonic/gin"
)

// Buffered mode re-runs the handlers after the middleware when the unit's
// retry policy asks for it. Gin runs a chain by an index into it
// (Context.Next) and has no API to run the rest of the chain again, so the
// middleware puts the index back to its own position before each re-run.
// The field is found by name and type when the package loads; if a future
// gin renames it, TransactionWithOptions refuses Options.Buffer (panics)
// rather than re-run the wrong handlers, and TestBufferedRetryRewindsTheChain
// says so.

// indexOffset is the offset of gin.Context's handler index, an int8.
var indexOffset, rewindable = func() (uintptr, bool) {
	f, ok := reflect.TypeFor[gin.Context]().FieldByName("index")
	if !ok || f.Type.Kind() != reflect.Int8 {
		return 0, false
	}
	return f.Offset, true
}()

// handlerIndex returns c's handler index: in a middleware, its position.
func handlerIndex(c *gin.Context) int8 {
	if !rewindable {
		return 0
	}
	return *(*int8)(unsafe.Add(unsafe.Pointer(c), indexOffset))
}

// rewind sets c's handler index to index, so that c.Next runs the handlers
// after that position again.
func rewind(c *gin.Context, index int8) {
	*(*int8)(unsafe.Add(unsafe.Pointer(c), indexOffset)) = index
}
