"""The regional stack's components: storage and ingest, the edge, the workers and the
multi-region half. Each builds its constructs into the stack, grants its principals what
their code uses (with the cdk-nag acknowledgements of those grants) and feeds the region's
monitoring the alarms and dashboard rows of its resources.

A component is not a construct of its own: a construct's path is its resources' identity.
Nesting the existing constructs one level deeper would rename every logical id under them,
and the ids CDK derives from paths (security-group rules, event source mappings); a renamed
Kinesis event source mapping is a new one, which reads the task stream again from
TRIM_HORIZON. Building into the stack keeps every resource as it is deployed."""
