"""Reports: one self-contained HTML page from result files, and the results history across commits and machines."""
