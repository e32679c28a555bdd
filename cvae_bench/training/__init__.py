"""Training to a target: the loop, run folders, repeats and their comparison."""
