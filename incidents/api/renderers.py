"""The API's JSON renderer: UTF-8 as usual, and an answer even when an error echoes bad input."""

from __future__ import annotations

from rest_framework import renderers


class _AsciiJSONRenderer(renderers.JSONRenderer):
    ensure_ascii = True


class JSONRenderer(renderers.JSONRenderer):
    """JSON in UTF-8; a lone surrogate ("\\ud800", which a JSON body may spell) echoed in an
    error (an unknown field's name, "… is not a valid choice") has no UTF-8 form, so that answer
    is written with \\u escapes instead of failing with a 500. Nothing stored has one:
    PostgreSQL refuses them."""

    def render(self, data, accepted_media_type=None, renderer_context=None) -> bytes:
        try:
            return super().render(data, accepted_media_type, renderer_context)
        except UnicodeEncodeError:
            return _AsciiJSONRenderer().render(data, accepted_media_type, renderer_context)
