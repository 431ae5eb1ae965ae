"""Errors as API answers: service errors as field-level 400s, 403s and 409s, and Django's own
error pages (400, 403, 404, 413, 500) as JSON under /api/, so a client never parses HTML."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import JsonResponse
from django.views import defaults
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from incidents.api.services.idempotency import IdempotencyKeyReusedError
from incidents.exceptions import ChangedError
from incidents.services import TransitionRefusedError

from .renderers import JSONRenderer


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The incident changed meanwhile; fetch it again."
    default_code = "conflict"


class BodyTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "body_too_large"

    def __init__(self, limit: int) -> None:
        super().__init__(f"The body is larger than {limit:,} bytes, the most the API reads.")


class UnprocessableEntity(exceptions.APIException):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    default_code = "unprocessable"


def as_api_error(exc: DjangoValidationError) -> exceptions.ValidationError:
    """A service's ValidationError, keeping its fields (`{"severity": [...]}`) when it has them."""
    if hasattr(exc, "error_dict"):
        return exceptions.ValidationError(exc.message_dict)
    return exceptions.ValidationError({"non_field_errors": exc.messages})


def exception_handler(exc, context) -> Response | None:
    if isinstance(exc, DjangoValidationError):
        exc = as_api_error(exc)
    elif isinstance(exc, (TransitionRefusedError, ChangedError)):
        exc = Conflict(str(exc) or getattr(exc, "message", ""))
    elif isinstance(exc, IdempotencyKeyReusedError):
        exc = UnprocessableEntity(str(exc))
    elif isinstance(exc, PermissionDenied) and str(exc):
        # Keep the service's reason ("Only an incident manager may ...") instead of DRF's generic one.
        exc = exceptions.PermissionDenied(str(exc))
    response = drf_exception_handler(exc, context)
    request = context.get("request")
    if response is not None and request is not None:
        # An error is JSON whatever the answer would have been (the schema's YAML, the docs'
        # HTML, or an Accept header nothing satisfies): DRF renders it with this renderer.
        request.accepted_renderer, request.accepted_media_type = JSONRenderer(), JSONRenderer.media_type
    return response


def _is_api(request) -> bool:
    return request.path.startswith("/api/")


def _answer(detail: str, status_code: int) -> JsonResponse:
    return JsonResponse({"detail": detail}, status=status_code)


# The project's handler400/403/404/500 (tmt_ir/urls.py): DRF answers errors inside its views;
# these answer what happens outside them (a URL no route matches, a body over Django's
# DATA_UPLOAD_MAX_MEMORY_SIZE, a disallowed Host, an exception DRF does not handle).


def bad_request(request, exception=None):
    if not _is_api(request):
        return defaults.bad_request(request, exception)
    if isinstance(exception, RequestDataTooBig):
        return _answer("The body is larger than the server reads.", 413)
    return _answer("Bad request.", 400)


def permission_denied(request, exception=None):
    if not _is_api(request):
        return defaults.permission_denied(request, exception)
    return _answer("You do not have permission to perform this action.", 403)


def not_found(request, exception=None):
    if not _is_api(request):
        return defaults.page_not_found(request, exception)
    return _answer("Not found.", 404)


def server_error(request):
    """No detail of the exception: it is logged (django.request), never shown."""
    if not _is_api(request):
        return defaults.server_error(request)
    return _answer("Server error.", 500)
