"""How each category of domain error answers: its HTTP status and its CLI exit code, declared once.

The HTTP API and the CLI both read this table; neither keeps a mapping of its own. A test walks
every error class and checks that it has a category here and a row in docs/errors.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

from idgate.domain import Category, IdgateError

# Exit codes of the `idgate` command that are not errors.
EXIT_ALLOW = 0
EXIT_DENY_OR_REVIEW = 1


@dataclass(frozen=True, slots=True)
class Answer:
    status: int  # HTTP status code
    exit_code: int  # exit code of the `idgate` command
    title: str  # the problem title clients see for this category


# 2: fix the request; 3: a dependency failed, retry later; 4: stored data or keys failed a check,
# investigate; 5: idgate is configured wrongly.
ANSWERS = MappingProxyType(
    {
        Category.BAD_INPUT: Answer(400, 2, "the request is not valid"),
        Category.UNAUTHENTICATED: Answer(401, 2, "authentication required"),
        Category.FORBIDDEN: Answer(403, 2, "not allowed for this token"),
        Category.NOT_FOUND: Answer(404, 2, "not found"),
        Category.CONFLICT: Answer(409, 2, "conflicts with the current state"),
        Category.REJECTED: Answer(422, 2, "the verification cannot be accepted"),
        Category.THROTTLED: Answer(429, 3, "too many requests"),
        Category.PROVIDER_FAILED: Answer(502, 3, "PortOne is unavailable"),
        Category.PROVIDER_TIMEOUT: Answer(504, 3, "PortOne did not answer in time"),
        Category.UNAVAILABLE: Answer(503, 3, "idgate cannot serve this right now"),
        Category.INTEGRITY: Answer(500, 4, "stored data failed an integrity check"),
        Category.CONFIGURATION: Answer(500, 5, "idgate is not configured correctly"),
    }
)


# Codes the HTTP layer sends for failures that never reach the domain (routing, parsing, bugs).
HTTP_ONLY_CODES = MappingProxyType(
    {
        "invalid_request": 400,  # the body or a parameter failed validation
        "not_found": 404,  # no such route
        "method_not_allowed": 405,
        "request_timeout": 408,  # the body did not arrive within [http] body_timeout_seconds
        "unsupported_media_type": 415,
        "internal_error": 500,  # an unexpected exception; logged with its reference
    }
)


def answer_for(error: IdgateError) -> Answer:
    return ANSWERS[error.category]
