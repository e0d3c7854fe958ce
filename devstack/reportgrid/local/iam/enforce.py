"""`python -m reportgrid.local.iam.enforce --template <cdk.out> --region <r>
(--container NAME | --function HANDLER | --role LOGICAL_ID) -- (-m MODULE | SCRIPT) ARGS...`

Runs a program (argv preserved, as `python -m MODULE ARGS` would) with every AWS call it
makes judged against the role the template gives that component (hook.py): the edge as
`--container edge`, a Lambda as `--function functions.stream_worker.handler.handler`.
Nothing in the program changes; a denied call raises the error AWS would raise.

`--hide-self` is for a program that must see only its own tree (an image's, an asset's):
once the hook is in, this package's source root leaves sys.path and its modules leave
sys.modules, so the program cannot import the dev stack (the hook keeps working). A host
that starts Python itself (the Lambda host's bootstrap) installs the hook from a JSON spec
instead (`spec`, `install_from_spec`).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import runpy
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

from reportgrid.local.bootstrap import LOCAL_ACCOUNT
from reportgrid.local.iam.hook import Enforcer, enforced, install
from reportgrid.local.iam.resolve import Localization, TemplateError
from reportgrid.local.iam.template import load_model

# devstack/: the root this package is imported from.
SOURCE_ROOT: Final = Path(__file__).resolve().parents[3]


def build_enforcer(
    template: Path,
    *,
    region: str,
    container: str | None = None,
    function: str | None = None,
    role: str | None = None,
    account: str = LOCAL_ACCOUNT,
    physical: dict[str, str] | None = None,
    renames: dict[str, str] | None = None,
    secure_transport: bool = True,
    session_name: str | None = None,
) -> Enforcer:
    """An enforcer for one component of the template's stacks in `region`."""
    local = Localization(
        region=region, account=account, physical=physical or {}, renames=renames or {}
    )
    model = load_model(template, local)
    found = model.role(logical_id=role, function=function, container=container)
    return Enforcer(
        model,
        found,
        account=account,
        # A role session name allows [\w+=,.@-] and 64 characters.
        session_name=re.sub(
            r"[^\w+=,.@-]", "-", session_name or container or function or role or "local"
        )[:64],
        secure_transport=secure_transport,
    )


@contextmanager
def enforcing(
    template: Path,
    *,
    region: str,
    container: str | None = None,
    function: str | None = None,
    role: str | None = None,
    physical: dict[str, str] | None = None,
) -> Iterator[Enforcer]:
    """`with enforcing(cdk_out, region=..., function=...):` for in-process use (e.g. the
    local Kinesis runner calling a handler in its own process)."""
    built = build_enforcer(
        template,
        region=region,
        container=container,
        function=function,
        role=role,
        physical=physical,
    )
    with enforced(built) as enforcer:
        yield enforcer


def spec(
    template: Path,
    *,
    region: str,
    container: str | None = None,
    function: str | None = None,
    role: str | None = None,
    physical: dict[str, str] | None = None,
) -> str:
    """The JSON a host passes to `install_from_spec` in the process it starts."""
    return json.dumps(
        {
            "source": str(SOURCE_ROOT),
            "template": str(template),
            "region": region,
            "container": container,
            "function": function,
            "role": role,
            "physical": physical or {},
        }
    )


def install_from_spec(text: str) -> Enforcer:
    """Install the hook a `spec` describes, e.g. in a Lambda host's bootstrap:

    iam = os.environ.pop("REPORTGRID_LOCAL_IAM", "")
    if iam:
        root = json.loads(iam)["source"]
        sys.path.append(root)
        import reportgrid.local.iam.enforce as enforce
        enforce.install_from_spec(iam)
        enforce.hide_self()
    """
    found: dict[str, Any] = json.loads(text)
    enforcer = build_enforcer(
        Path(found["template"]),
        region=found["region"],
        container=found.get("container"),
        function=found.get("function"),
        role=found.get("role"),
        physical=found.get("physical") or {},
    )
    install(enforcer)
    return enforcer


def hide_self() -> None:
    """Take this package's source root off sys.path and the dev stack's modules out of
    sys.modules: the program cannot import them (the installed hook keeps its references;
    the `reportgrid` namespace package recomputes its path from sys.path)."""
    root = str(SOURCE_ROOT)
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != SOURCE_ROOT and p != root]
    for name in [
        m for m in sys.modules if m == "reportgrid.local" or m.startswith("reportgrid.local.")
    ]:
        del sys.modules[name]


def _pairs(values: Sequence[str], flag: str, parser: argparse.ArgumentParser) -> dict[str, str]:
    found: dict[str, str] = {}
    for value in values:
        key, sep, text = value.partition("=")
        if not sep or not key:
            parser.error(f"{flag} {value!r}: give NAME=VALUE")
        found[key] = text
    return found


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m reportgrid.local.iam.enforce",
        description="Run a program under a component's synthesized IAM role.",
    )
    parser.add_argument("--template", type=Path, required=True, help="cdk.out or a template")
    parser.add_argument(
        "--region",
        default=os.environ.get("REPORTGRID_REGION") or os.environ.get("AWS_DEFAULT_REGION"),
        help="the local region (default: REPORTGRID_REGION, AWS_DEFAULT_REGION)",
    )
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--container", help="an ECS container name: its task role")
    who.add_argument("--function", help="a Lambda handler: the function's role")
    who.add_argument("--role", help="a role's logical id (or a unique prefix)")
    parser.add_argument("--account", default=LOCAL_ACCOUNT)
    parser.add_argument(
        "--physical",
        action="append",
        default=[],
        metavar="ID=VALUE",
        help="the local value of a resource the template names by a generated name "
        "(LogicalId for its Ref, LogicalId.Attribute for Fn::GetAtt)",
    )
    parser.add_argument(
        "--rename",
        action="append",
        default=[],
        metavar="DEPLOYED=LOCAL",
        help="template text to replace (e.g. a configured input bucket's name)",
    )
    parser.add_argument(
        "--hide-self",
        action="store_true",
        help="once the hook is in, hide the dev stack from the program (image/asset mode)",
    )
    parser.add_argument(
        "--insecure-transport",
        action="store_true",
        help="judge aws:SecureTransport as false (the moto endpoint's real scheme)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    if "--" not in argv:
        parser.error("give the program after --: -- -m MODULE ARGS, or -- SCRIPT ARGS")
    split = argv.index("--")
    args, target = parser.parse_args(argv[:split]), argv[split + 1 :]
    if not args.region:
        parser.error("--region is required (or REPORTGRID_REGION / AWS_DEFAULT_REGION)")
    if not target or (target[0] == "-m" and len(target) < 2):
        parser.error("nothing to run after --")
    try:
        enforcer = build_enforcer(
            args.template,
            region=args.region,
            container=args.container,
            function=args.function,
            role=args.role,
            account=args.account,
            physical=_pairs(args.physical, "--physical", parser),
            renames=_pairs(args.rename, "--rename", parser),
            secure_transport=not args.insecure_transport,
        )
    except TemplateError as err:
        parser.error(str(err))
    role = enforcer.default.role
    assert role is not None
    sys.stderr.write(
        f"iam: {' '.join(target)} runs as {role.arn} ({role.logical_id}, "
        f"{len(role.statements)} statements) from {args.template}\n"
    )
    install(enforcer)
    if args.hide_self:
        hide_self()
    if target[0] == "-m":
        sys.argv = [target[1], *target[2:]]
        runpy.run_module(target[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = list(target)
        runpy.run_path(target[0], run_name="__main__")


if __name__ == "__main__":
    main()
