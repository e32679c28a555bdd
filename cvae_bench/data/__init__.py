"""Data sets: one DatasetSpec per data set (checksums, sources, shapes, classes) and their loading."""
