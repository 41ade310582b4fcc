"""What every layer of the runner shares, and nothing that trains: the run's configuration (typed
dataclasses, YAML, `--set`, validation), the method registry (names only), the error types, atomic
file writes and locks, the run folder (creating, reading and replacing one without clobbering), the
console, and the test-only fault points. It imports the `salora` library and nothing above itself."""
