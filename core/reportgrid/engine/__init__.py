"""The report engine: kinds, their parameters and their generators."""
