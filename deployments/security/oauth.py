"""The OAuth2 token endpoint's wire format (RFC 6749): form-encoded requests, JSON errors.

``POST /security/token`` takes either aisys's JSON :class:`Grant` or a standard OAuth2 token
request, ``application/x-www-form-urlencoded``, as OAuth2 clients send it (Prometheus'
``oauth2`` scrape option, Swagger UI's login). A client may authenticate with HTTP Basic
(``client_id:client_secret``, each form-URL-encoded first, section 2.3.1) or with
``client_id``/``client_secret`` in the form, never both. Errors of a form request are OAuth2
error bodies (section 5.2): ``{"error": "invalid_client", "error_description": "..."}``.

Example::

    grant = parse_token_form(await request.body(), request.headers.get("authorization"))
"""

from __future__ import annotations

import base64
import binascii
from typing import Literal
from urllib.parse import parse_qsl, unquote_plus

from pydantic import BaseModel, ConfigDict, ValidationError

from actors.security.models import Grant
from cluster.base.errors import CredentialsRejected, RateLimited, SecurityError, TokenRejected

__all__ = [
    "FORM_CONTENT_TYPE",
    "MAX_FORM_BYTES",
    "OAuthError",
    "OAuthErrorBody",
    "oauth_error_of",
    "parse_token_form",
]

FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
#: A token request is a few short fields; a longer body is refused before it is parsed.
MAX_FORM_BYTES = 8192
_GRANT_TYPES = ("password", "client_credentials", "refresh_token")
_FIELDS = frozenset(Grant.model_fields)

ErrorCode = Literal[
    "invalid_request",
    "invalid_client",
    "invalid_grant",
    "invalid_scope",
    "unsupported_grant_type",
    "temporarily_unavailable",
]


class OAuthErrorBody(BaseModel):
    """An OAuth2 error response body (RFC 6749 section 5.2)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    error: ErrorCode
    error_description: str


class OAuthError(Exception):
    """A token request refused with an OAuth2 error; ``status`` is the HTTP status."""

    def __init__(
        self, error: ErrorCode, description: str, status: int = 400, retry_after_s: int = 0
    ) -> None:
        super().__init__(error, description, status, retry_after_s)
        self.body = OAuthErrorBody(error=error, error_description=description)
        self.status = status
        self.retry_after_s = retry_after_s

    @property
    def headers(self) -> dict[str, str]:
        headers = {"Cache-Control": "no-store", "Pragma": "no-cache"}
        if self.status == 401:
            headers["WWW-Authenticate"] = 'Basic realm="aisys"'
        if self.retry_after_s:
            headers["Retry-After"] = str(self.retry_after_s)
        return headers


def _basic_credentials(authorization: str | None) -> tuple[str, str] | None:
    if not authorization:
        return None
    scheme, _, encoded = authorization.partition(" ")
    if scheme.lower() != "basic":
        raise OAuthError(
            "invalid_client", "the Authorization header must be 'Basic <client credentials>'", 401
        )
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise OAuthError("invalid_client", "the Basic credentials are not base64", 401) from exc
    client_id, colon, secret = decoded.partition(":")
    if not colon:
        raise OAuthError("invalid_client", "the Basic credentials have no ':'", 401)
    return unquote_plus(client_id), unquote_plus(secret)


def _form_fields(body: bytes) -> dict[str, str]:
    if len(body) > MAX_FORM_BYTES:
        raise OAuthError("invalid_request", f"the request body is over {MAX_FORM_BYTES} bytes")
    try:
        pairs = parse_qsl(body.decode(), keep_blank_values=True, max_num_fields=16)
    except (UnicodeDecodeError, ValueError) as exc:
        raise OAuthError("invalid_request", f"the form body cannot be read ({exc})") from exc
    fields: dict[str, str] = {}
    for name, value in pairs:
        if name in fields:
            raise OAuthError("invalid_request", f"parameter {name!r} is given more than once")
        fields[name] = value
    return fields


def parse_token_form(body: bytes, authorization: str | None) -> Grant:
    """The :class:`Grant` of a form-encoded OAuth2 token request.

    Unknown parameters are ignored, as RFC 6749 section 3.2 asks (Prometheus' ``endpoint_params``
    may add some); empty ones count as absent.

    Raises:
        OAuthError: the request is malformed, names no or an unsupported grant type, or carries
            client credentials both in the Authorization header and in the form.
    """
    fields = {k: v for k, v in _form_fields(body).items() if v != "" and k in _FIELDS}
    grant_type = fields.get("grant_type")
    if grant_type is None:
        raise OAuthError("invalid_request", "grant_type is missing")
    if grant_type not in _GRANT_TYPES:
        raise OAuthError(
            "unsupported_grant_type",
            f"grant_type {grant_type!r} is not supported; use one of {', '.join(_GRANT_TYPES)}",
        )
    basic = _basic_credentials(authorization)
    if basic is not None:
        if "client_secret" in fields or fields.get("client_id", basic[0]) != basic[0]:
            raise OAuthError(
                "invalid_request", "send the client credentials in one place: header or form"
            )
        fields["client_id"], fields["client_secret"] = basic
    if grant_type == "client_credentials" and not (
        fields.get("client_id") and fields.get("client_secret")
    ):
        raise OAuthError("invalid_client", "client authentication is missing", 401)
    try:
        return Grant.model_validate(fields)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise OAuthError("invalid_request", problems) from exc


def oauth_error_of(exc: SecurityError, grant_type: str) -> OAuthError | None:
    """The OAuth2 error for an aisys error a grant raised; None for an error of another kind.

    Raises nothing; an error this does not map (an outage) keeps its usual handling.
    """
    if isinstance(exc, CredentialsRejected):
        if grant_type == "client_credentials":
            return OAuthError("invalid_client", str(exc), 401)
        return OAuthError("invalid_grant", str(exc))
    if isinstance(exc, TokenRejected):
        # The only way a password or client grant is refused with TokenRejected is a scope it
        # may not have; a refresh grant's token itself was refused.
        if grant_type == "refresh_token":
            return OAuthError("invalid_grant", str(exc))
        return OAuthError("invalid_scope", str(exc))
    if isinstance(exc, RateLimited):
        wait = max(1, int(exc.retry_after_s + 0.999))
        return OAuthError("temporarily_unavailable", str(exc), 429, wait)
    return None
