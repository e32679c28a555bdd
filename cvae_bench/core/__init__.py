"""What every wing shares: the exception tree, shared defaults, typed records, statistics, versions, tables,
tuning knobs."""
