package outbox

// Abandon makes r stop, when its Run's context ends, without releasing its
// lease: what a crashed process leaves behind.
func Abandon(r *Relay) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.abandon = true
}
