"""Service errors as API answers: field-level 400s, 403s and 409s, never a 500."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import JsonResponse
from django.views.defaults import page_not_found
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from incidents.api.services.idempotency import IdempotencyKeyReusedError
from incidents.exceptions import ChangedError
from incidents.services import TransitionRefusedError


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The incident changed meanwhile; fetch it again."
    default_code = "conflict"


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
    return drf_exception_handler(exc, context)


def not_found(request, exception=None):
    """404 for the whole site: JSON under /api/ (a URL the router cannot match), the page elsewhere."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Not found."}, status=404)
    return page_not_found(request, exception)
