"""Benchmarks: timing, the roofline, benchmark groups, the runner and its report."""
