"""Serving: the exported decoder measured as it is deployed (load scenarios) and run in the browser."""
