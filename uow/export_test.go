package uow

// SetTwoPhaseStep sets the hook a two-phase commit calls at each crash
// point (see twoPhaseStep), for the tests that kill a process there; it
// returns a function that restores the previous hook.
func SetTwoPhaseStep(f func(step, source string)) (restore func()) {
	old := twoPhaseStep
	twoPhaseStep = f
	return func() { twoPhaseStep = old }
}
