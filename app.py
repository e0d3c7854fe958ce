"""The CDK app: read the deployment from cdk.json context, build the stacks, synthesize.

`make synth` runs this directly (no AWS credentials, no Docker, no CDK CLI), so it reads
cdk.json's context itself; under `cdk synth/deploy` the CLI passes the context (with any
`-c` overrides) and that wins.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import aws_cdk as cdk

from cdk.config import parse_config
from cdk.deployment import build_deployment

PROJECT_DIR = Path(__file__).resolve().parent

context = None
if "CDK_CONTEXT_JSON" not in os.environ:
    context = json.loads((PROJECT_DIR / "cdk.json").read_text())["context"]
# The CLI says where to write (CDK_OUTDIR); run directly (`make synth`), write cdk.out/.
outdir = None if "CDK_OUTDIR" in os.environ else str(PROJECT_DIR / "cdk.out")
app = cdk.App(context=context, outdir=outdir)
build_deployment(app, parse_config(app.node.try_get_context), PROJECT_DIR)
app.synth()
