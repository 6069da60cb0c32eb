"""Agentic benchmarks: a sample is an episode (many model turns, tools with state, a simulated user), not one
request. `episodes.complete_episodes` runs them beside the plain requests of a sweep; each benchmark module holds its
TaskSpecs, its episode driver and its grader."""
