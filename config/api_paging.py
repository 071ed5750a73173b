"""Pagination that refuses what it cannot honour, for every list under /api/."""

from django.http import QueryDict
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request


class StrictLimitOffsetPagination(LimitOffsetPagination):
    """?limit= (1 to 500, default 50) and ?offset= (0 or more). A bad value is a 400 naming the
    parameter, and so is a limit over 500: DRF's own pagination would quietly use its default or
    its cap instead, and a caller would never learn that the page is not the one asked for."""

    default_limit = 50
    max_limit = 500

    def get_limit(self, request: Request) -> int:
        return page_params(request.query_params, self.default_limit, self.max_limit)[0]

    def get_offset(self, request: Request) -> int:
        return page_params(request.query_params, self.default_limit, self.max_limit)[1]


def page_params(params: QueryDict, default_limit: int, max_limit: int) -> tuple[int, int]:
    """(limit, offset) from the query; ValidationError naming each bad one."""
    errors = {}
    values = {"limit": default_limit, "offset": 0}
    bounds = {"limit": (1, max_limit), "offset": (0, None)}
    for name, (low, high) in bounds.items():
        raw = params.get(name, "").strip()
        if not raw:
            continue
        try:
            value = int(raw)
        except ValueError:
            value = None
        if value is None or value < low or (high is not None and value > high):
            allowed = f"from {low} to {high}" if high is not None else f"{low} or more"
            errors[name] = [f"{name} must be a whole number {allowed}; got {raw!r}."]
        else:
            values[name] = value
    if errors:
        raise ValidationError(errors)
    return values["limit"], values["offset"]
