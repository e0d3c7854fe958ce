"""AWS's AccessDenied, per service: the error code, the HTTP status and the message, so a
denied call raises in the code exactly what it would raise in AWS.

Message: "User: <session ARN> is not authorized to perform: <action> on resource:
<resource> because no identity-based policy allows the <action> action" (or "with an
explicit deny in a resource-based policy"), the shape IAM documents for implicit and
explicit denies. Service quirks: SQS names the action in lower case ("sqs:sendmessage",
seen in aws/serverless-application-model#3633) and answers 403 AccessDenied; S3 quotes the
resource, and a HEAD request's error has no body, so botocore reports code "403" and
message "Forbidden"; the JSON services (DynamoDB, Kinesis, Secrets Manager, KMS) answer 400
AccessDeniedException; SNS 403 AuthorizationError.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Final

from botocore.awsrequest import AWSResponse
from botocore.compat import HTTPHeaders

# service -> (error code, HTTP status)
_ERRORS: Final = {
    "dynamodb": ("AccessDeniedException", 400),
    "kinesis": ("AccessDeniedException", 400),
    "secretsmanager": ("AccessDeniedException", 400),
    "kms": ("AccessDeniedException", 400),
    "sqs": ("AccessDenied", 403),
    "s3": ("AccessDenied", 403),
    "sts": ("AccessDenied", 403),
    "sns": ("AuthorizationError", 403),
}
_DEFAULT: Final = ("AccessDenied", 403)


@dataclass(frozen=True, slots=True)
class AccessDenied:
    """A denial, ready to be returned from botocore's before-call event."""

    service: str
    operation: str
    message: str
    head: bool = False  # a HEAD request: no error body

    @property
    def code(self) -> str:
        return "403" if self.head else _ERRORS.get(self.service, _DEFAULT)[0]

    @property
    def status(self) -> int:
        return 403 if self.head else _ERRORS.get(self.service, _DEFAULT)[1]

    def response(self, url: str) -> tuple[AWSResponse, dict[str, Any]]:
        """(http response, parsed response) as botocore's client expects them from a
        before-call handler that answers the call itself."""
        request_id = str(uuid.uuid4())
        headers = HTTPHeaders()
        headers["x-amzn-requestid"] = request_id
        parsed: dict[str, Any] = {
            "Error": {"Code": self.code, "Message": "Forbidden" if self.head else self.message},
            "ResponseMetadata": {
                "RequestId": request_id,
                "HTTPStatusCode": self.status,
                "HTTPHeaders": {"x-amzn-requestid": request_id},
                "RetryAttempts": 0,
            },
        }
        return AWSResponse(url, self.status, headers, None), parsed


def message(service: str, principal: str, action: str, resource: str, because: str) -> str:
    shown_action = action.lower() if action.startswith("sqs:") else action
    shown_resource = f'"{resource}"' if resource.startswith("arn:aws:s3:") else resource
    because = because.format(action=shown_action)
    return (
        f"User: {principal} is not authorized to perform: {shown_action} "
        f"on resource: {shown_resource} {because}"
    )
