"""A healthy view and a leaky one."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse


class CacheEntry:
    """What the leaky view stores; small on purpose, many of them add up."""

    def __init__(self, key: int) -> None:
        self.key = key


CACHE: list[CacheEntry] = []  # module-level and never pruned: the leak
PER_REQUEST = 10


def index(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def leak(request: HttpRequest) -> JsonResponse:
    for _ in range(PER_REQUEST):
        CACHE.append(CacheEntry(len(CACHE)))  # LEAK: entries are added and never removed
    return JsonResponse({"cached": len(CACHE)})
