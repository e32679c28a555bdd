"""The anatomy of a step: where a backend's training step (or decoder call) spends its time, by category."""
