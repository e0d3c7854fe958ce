"""The client, one folder per flavour: `_async` is written by hand, `_sync` is generated from
it by client/unasync.py (see reportgrid.client)."""
