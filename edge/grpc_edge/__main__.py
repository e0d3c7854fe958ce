"""`python -m grpc_edge [--workers N] [--port P] [--host H] [--drain-delay S]`.

Settings come from the environment (reportgrid.settings). No grpc import here: the workers
are forked before gRPC is loaded.
"""

from __future__ import annotations

import sys

from grpc_edge.workers import main

if __name__ == "__main__":
    sys.exit(main())
