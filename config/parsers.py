"""The API's JSON parser: every body goes through `config/jsonbody.py` (size, nesting, numbers) before DRF sees it."""

from __future__ import annotations

from django.conf import settings
from rest_framework.parsers import JSONParser

from config import jsonbody
from config.errors import BodyRefused


class BoundedJSONParser(JSONParser):
    """413 over `API_MAX_BODY_BYTES`; 400 `too_deep` / `out_of_range` / `invalid_json` with `{"code", "detail"}`."""

    def parse(self, stream, media_type=None, parser_context=None):
        limit = settings.API_MAX_BODY_BYTES
        raw = stream.read(limit + 1) if stream is not None else b""
        try:
            return jsonbody.parse(raw, max_bytes=limit, empty={})
        except jsonbody.BodyError as error:
            raise BodyRefused(error) from None
