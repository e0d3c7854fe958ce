"""The mirror consumer: the second consumer of the regional task stream (issue 9)."""
