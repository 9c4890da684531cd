"""The study that uses the science: runs and their store, arms and seeds, evaluation specs, records and verdicts,
figures, tables, the report, the pipeline and the model zoo."""
