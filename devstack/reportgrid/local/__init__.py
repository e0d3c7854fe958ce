"""The local region: real servers (moto, redis-server) and the resources Reportgrid needs,
created from the same definitions as the CDK stacks (reportgrid.resources)."""
