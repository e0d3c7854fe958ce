"""The stacks: data (global table, id secret), one per region, and the global front door."""
