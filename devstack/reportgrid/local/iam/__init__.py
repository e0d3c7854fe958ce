"""IAM in the local region: every AWS call a component makes is judged against the policies
the synthesized template gives its role, and denied the way AWS denies it (docs/
LOCAL_REGION.md, "IAM: every call judged against the deployed policy").

  patterns.py    wildcards, ARN segments, policy variables; the request context
  policy.py      the policy language and AWS's evaluation order (one account)
  conditions.py  the condition operators
  resolve.py     template values (intrinsics) made local
  template.py    the role, resource and key policies of a template's region
  actions.py     which IAM actions and resources each botocore call needs
  denials.py     AWS's AccessDenied error per service
  hook.py        the botocore event handlers (boto3 and aioboto3 alike), `enforced(...)`
  enforce.py     `python -m reportgrid.local.iam.enforce ... -- -m <module> ...`
"""
