"""The Reportgrid gRPC edge server. Importing this package imports no grpc (see workers)."""
