"""Layer 7, training: the train state, optimizer and schedules, what a config builds (`run`), the train step and loop
with resume, stop on signal and the run log."""
