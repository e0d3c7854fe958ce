"""The synthetic canary: once a minute, a real Submit -> Watch -> Get of a tiny light report
through one region's own listener, as a client of the service (the SDK, with a canary
tenant's API key), emitting whether it worked and how long it took (CanarySuccess 1 or 0,
CanaryLatency in ms; EMF, namespace Reportgrid, {service: reportgrid-canary}). The region's
alarm, its dashboard and the pipeline's bake step read them.

It ships in its own Lambda asset (the `canary` artifact of cdk/artifacts.py): this package,
the SDK and the API modules, nothing of the core.
"""
