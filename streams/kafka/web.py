"""The worker's web server: the read API and /metrics, with optional bearer token and TLS.

``GET /customers/{id}`` answers a customer's grade, score, PD and reasons (routed by Faust to the
worker that owns the customer's partition); ``GET /queue?limit=N`` this worker's customers with
open alerts, highest expected loss first (:mod:`streams.core.queue`; ``riskmon queue`` merges the
workers'); ``GET /metrics`` is Prometheus' scrape. With an API token set, ``/customers`` and
``/queue`` need ``Authorization: Bearer <token>`` (compared in constant time) and answer 401
otherwise; ``/metrics`` stays open unless ``metrics_auth`` is on. With a certificate and key, the
server speaks HTTPS only.
"""

from __future__ import annotations

import hmac
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

from scoring.errors import InputError

#: Prometheus text format 0.0.4 (aiohttp refuses a charset inside content_type; it is utf-8)
PROM_TYPE = "text/plain; version=0.0.4"
#: the longest id an error body repeats (a 404 must not echo a megabyte back)
SHOWN_ID = 64
QUEUE_LIMIT = 100  # items GET /queue answers without ?limit=
JSON_TYPE = "application/json"


def tls_context(cert: Path | None, key: Path | None) -> ssl.SSLContext | None:
    """The server's TLS context from a PEM certificate (chain) and key; None without them."""
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise InputError("TLS for the web server needs both --web-tls-cert and --web-tls-key")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        ctx.load_cert_chain(str(cert), str(key))
    except (OSError, ssl.SSLError) as exc:
        raise InputError(f"cannot load the web server's certificate/key: {exc}") from None
    return ctx


class Access:
    """Who may call: everyone, or whoever shows the bearer token."""

    def __init__(self, token: str | None) -> None:
        self._expected = f"Bearer {token}".encode() if token else None

    @property
    def required(self) -> bool:
        return self._expected is not None

    def allows(self, request: Any) -> bool:
        if self._expected is None:
            return True
        got = request.headers.get("Authorization", "").encode()
        return hmac.compare_digest(got, self._expected)


def unauthorized(web: Any) -> Any:
    return web.json(
        {"error": "missing or wrong bearer token"},
        status=401,
        headers={"WWW-Authenticate": 'Bearer realm="riskmon"'},
    )


def shown(customer_id: str) -> str:
    """``customer_id`` as an error body may repeat it: cut to :data:`SHOWN_ID` characters."""
    if len(customer_id) <= SHOWN_ID:
        return customer_id
    return f"{customer_id[:SHOWN_ID]}... ({len(customer_id)} characters)"


def queue_limit(raw: str | None, most: int) -> int | None:
    """``?limit=`` as an int in 1..``most`` (absent: :data:`QUEUE_LIMIT`), None if invalid."""
    if raw is None:
        return min(QUEUE_LIMIT, most)
    if not raw.isdigit() or len(raw) > 9 or not 1 <= int(raw) <= most:
        return None
    return int(raw)


def queue_max_dpd(raw: str | None) -> tuple[bool, int | None]:
    """``?max_dpd=``: (valid, an int in 0..99999 or None when absent: no bound)."""
    if raw is None:
        return True, None
    if not raw.isdigit() or len(raw) > 5:
        return False, None
    return True, int(raw)


def install_views(
    app: Any,
    table: Any,
    registry: CollectorRegistry,
    lookup: Callable[[str], dict[str, Any] | None],
    queue: Callable[[int, int | None], bytes],
    max_limit: int,
    access: Access,
    metrics_auth: bool,
) -> None:
    """Register ``/metrics``, ``/customers/{customer_id}`` and ``/queue`` on the Faust ``app``.
    ``lookup(customer_id)``: the customer's view from this worker's table, None if unknown;
    ``queue(limit, max_dpd)``: this worker's queue answer as JSON, at most ``max_limit`` items,
    of customers at most ``max_dpd`` days past due (None: any)."""

    @app.page("/metrics")
    async def metrics(web: Any, request: Any) -> Any:
        if metrics_auth and not access.allows(request):
            return unauthorized(web)
        return web.bytes(generate_latest(registry), content_type=PROM_TYPE)

    async def local(web: Any, request: Any, customer_id: str) -> Any:
        view = lookup(customer_id)
        if view is None:
            return web.json({"error": f"unknown customer {shown(customer_id)}"}, status=404)
        return web.json(view)

    routed: Callable[..., Awaitable[Any]] = app.table_route(table=table, match_info="customer_id")(
        local
    )

    @app.page("/customers/{customer_id}")
    async def customer(web: Any, request: Any, customer_id: str) -> Any:
        if not access.allows(request):  # before routing: the token travels with the request
            return unauthorized(web)
        return await routed(web, request, customer_id=customer_id)

    @app.page("/queue")
    async def open_alerts(web: Any, request: Any) -> Any:
        if not access.allows(request):
            return unauthorized(web)
        limit = queue_limit(request.query.get("limit"), max_limit)
        if limit is None:
            error = f"limit must be a whole number from 1 to {max_limit}"
            return web.json({"error": error}, status=400)
        valid, max_dpd = queue_max_dpd(request.query.get("max_dpd"))
        if not valid:
            return web.json({"error": "max_dpd must be a whole number from 0 to 99999"}, status=400)
        return web.bytes(queue(limit, max_dpd), content_type=JSON_TYPE)
