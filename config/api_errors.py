"""Every error under /api/ is JSON: `{"error": "<what was wrong>", "fields": {name: [reasons]}}`.

Two pieces, because errors come from two places:
- DRF views raise exceptions that DRF turns into responses: `api_exception_handler` (the
  REST_FRAMEWORK EXCEPTION_HANDLER) gives them this shape.
- Everything else is Django's: a URL that matches nothing (also a malformed id, which the
  `<uuid:...>` converter refuses before any view runs), an unhandled exception (500), a
  suspicious request (400). With DEBUG on Django answers those with its HTML debug pages, not
  with handler404/handler500, so `ApiErrorsMiddleware` rewrites any non-JSON error response
  under /api/ instead, with DEBUG on or off. Django has logged the exception by then; the
  answer never carries a traceback or an exception's text (it may hold a secret). The same
  middleware answers 413 to a body over DATA_UPLOAD_MAX_MEMORY_SIZE before anything reads it.

Answers our own views wrote (any DRF Response, e.g. the cron triggers' empty-bodied 401, and
any JSON response, e.g. their `{"success": ...}` results) are left as they are.
"""

import difflib
import json
import logging
from collections.abc import Iterable, Mapping
from http import HTTPStatus
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from rest_framework.exceptions import ValidationError as DRFValidationError
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import exception_handler

logger = logging.getLogger("config.api_errors")

API_PREFIX = "/api/"

GENERIC_ERRORS = {
    400: "Bad request: it could not be read.",
    404: "Not found: nothing at {path}; check the URL and the id.",
    500: "Internal server error: it has been logged; try again later or tell the operators.",
}


def error_body(error: str, fields: dict[str, list[str]] | None = None) -> dict[str, Any]:
    return {"error": error, "fields": fields or {}}


def _messages(value: Any) -> list[str]:
    """A field's errors as a flat list of strings (DRF nests lists and dicts)."""
    if isinstance(value, dict):
        return [f"{key}: {message}" for key, inner in value.items() for message in _messages(inner)]
    if isinstance(value, list | tuple):
        return [message for inner in value for message in _messages(inner)]
    return [str(value)]


def shape(data: Any) -> dict[str, Any]:
    """DRF's error data (`{"detail": ...}`, a list, or {field: errors}) as `{"error", "fields"}`.

    `non_field_errors` becomes the summary; without one the summary names every field's errors.
    """
    if isinstance(data, dict) and set(data) == {"detail"}:
        return error_body(str(data["detail"]))
    if not isinstance(data, dict):
        return error_body(" ".join(_messages(data)))
    fields = {str(name): _messages(errors) for name, errors in data.items()}
    summary = fields.pop(api_settings.NON_FIELD_ERRORS_KEY, None)
    if summary:
        return error_body(" ".join(summary), fields)
    return error_body("; ".join(f"{name}: {' '.join(errors)}" for name, errors in fields.items()), fields)


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler, answering in this module's shape; None (a 500) for what it does not know."""
    response = exception_handler(exc, context)
    if response is not None:
        response.data = shape(response.data)
    return response


def _phrase(status: int) -> str:
    try:
        return f"{HTTPStatus(status).phrase}."
    except ValueError:
        return f"Error {status}."


def is_api_path(request: HttpRequest) -> bool:
    return request.path_info.startswith(API_PREFIX)


def content_length(request: HttpRequest) -> int:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0


class ApiErrorsMiddleware:
    """Under /api/: 413 JSON for a body over DATA_UPLOAD_MAX_MEMORY_SIZE (Django would answer
    400, and DRF's JSON parser never checks the limit at all), and every error response that is
    not already JSON rewritten as JSON, keeping its status and headers."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not is_api_path(request):
            return self.get_response(request)
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        size = content_length(request)
        if limit is not None and size > limit:
            logger.warning("api_request_too_large", extra={"path": request.path, "bytes": size, "limit": limit})
            error = f"The request body is {size:,} bytes; the limit is {limit:,} bytes. Send less."
            return JsonResponse(error_body(error), status=413)
        response = self.get_response(request)
        if response.status_code >= 400 and not self._is_own_answer(response):
            self._rewrite(request, response)
        return response

    @staticmethod
    def _is_own_answer(response: HttpResponse) -> bool:
        return (
            isinstance(response, Response)
            or response.get("Content-Type", "").startswith("application/json")
            or getattr(response, "streaming", False)
        )

    @staticmethod
    def _rewrite(request: HttpRequest, response: HttpResponse) -> None:
        """In place, so headers and cookies set on the way out (security headers, Vary) stay."""
        status = response.status_code
        if status in GENERIC_ERRORS:
            error = GENERIC_ERRORS[status].format(path=request.path)
        elif status >= 500:
            error = GENERIC_ERRORS[500]
        else:
            error = _phrase(status)
        response.content = json.dumps(error_body(error)).encode()
        response["Content-Type"] = "application/json"
        if response.has_header("Content-Length"):
            response["Content-Length"] = str(len(response.content))


# Sent by HTML forms with a staff session; never a field of a resource.
IGNORED_FIELDS = {"csrfmiddlewaretoken"}


def unknown_field_errors(data: Mapping[str, Any], known: Iterable[str]) -> dict[str, list[str]]:
    """{name: [reason]} for each field the serializer does not know, suggesting the closest known
    name: a misspelt optional field (`sendAt`) would otherwise be dropped without a word."""
    known = list(known)
    by_folded = {name.lower().replace("_", "").replace("-", ""): name for name in known}
    errors = {}
    for name in data:
        if name in known or name in IGNORED_FIELDS:
            continue
        folded = str(name).lower().replace("_", "").replace("-", "")
        close = difflib.get_close_matches(folded, by_folded, n=1, cutoff=0.75)
        if close:
            errors[name] = [f"Unknown field {name!r}; did you mean {by_folded[close[0]]!r}?"]
        else:
            errors[name] = [f"Unknown field {name!r}; the fields are: {', '.join(known)}."]
    return errors


class RefusesUnknownFields:
    """Serializer mixin: a field it does not take is a 400 naming it, with the closest known name
    (DRF would drop it without a word), and a read-only field sent is "cannot be changed"."""

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return super().to_internal_value(data)  # type: ignore[misc]
        fields = self.fields  # type: ignore[attr-defined]
        writable = [name for name, field in fields.items() if not field.read_only]
        errors: dict[str, list[str]] = {
            name: ["This field cannot be changed."]
            for name, field in fields.items()
            if field.read_only and name in data
        }
        errors.update({name: e for name, e in unknown_field_errors(data, writable).items() if name not in errors})
        try:
            attrs = super().to_internal_value(data)  # type: ignore[misc]
        except DRFValidationError as exc:
            raise DRFValidationError({**errors, **exc.detail}) from exc
        if errors:
            raise DRFValidationError(errors)
        return attrs
