"""The standby worker: runs the peer region's mirrored tasks that their home region did not
progress (issue 9, docs/MULTI_REGION.md)."""
