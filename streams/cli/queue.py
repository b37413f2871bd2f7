"""`riskmon queue`: one day's work list for collections, merged from every worker's queue."""

from __future__ import annotations

import csv
import io
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence

import click
import msgspec

from scoring.errors import InputError
from streams.core.queue import MAX_LIMIT, QueueAnswer, QueueItem, merge

#: the work list's columns: (header, how to show an item's value)
COLUMNS = (
    "rank",
    "customer_id",
    "priority",
    "pd",
    "exposure",
    "grade",
    "dpd",
    "signal",
    "severity",
    "treatment",
    "opened_at",
    "open_alerts",
    "alert_id",
)


def worker_url(raw: str) -> str:
    """A worker's base URL (``host:port`` means http), without a trailing slash."""
    url = raw.strip().rstrip("/")
    if "://" not in url:
        url = "http://" + url
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InputError(f"not a worker URL: {raw!r} (want http://host:port or https://...)")
    return url


def fetch(
    url: str,
    limit: int,
    token: str | None,
    cafile: str | None,
    timeout: float,
    max_dpd: int | None = None,
) -> QueueAnswer:
    """One worker's ``GET /queue?limit=[&max_dpd=]``; a one-line :class:`InputError` for
    whatever fails."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    query = f"limit={limit}" + ("" if max_dpd is None else f"&max_dpd={max_dpd}")
    request = urllib.request.Request(f"{url}/queue?{query}", headers=headers)
    context = ssl.create_default_context(cafile=cafile) if url.startswith("https:") else None
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as resp:
            body = resp.read()
    except urllib.error.HTTPError as exc:
        if exc.code == 401:
            how = "a wrong token" if token else "no token: pass --token or RISKMON_API_TOKEN"
            raise InputError(f"worker {url} refused the request (401, {how})") from None
        detail = exc.read()[:200].decode(errors="replace")
        raise InputError(f"worker {url} answered HTTP {exc.code}: {detail}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise InputError(f"worker {url} is unreachable: {reason}") from None
    try:
        return msgspec.json.decode(body, type=QueueAnswer)
    except msgspec.DecodeError as exc:
        raise InputError(f"worker {url} did not answer a riskmon queue: {exc}") from None


def _row(rank: int, item: QueueItem) -> list[str]:
    return [
        str(rank),
        item.customer_id,
        f"{item.priority:.2f}",
        f"{item.pd:.4f}",
        f"{item.exposure:.2f}",
        item.grade,
        str(item.dpd),
        item.signal,
        item.severity,
        item.treatment,
        item.opened_at,
        str(len(item.alerts)),
        item.alert_id,
    ]


def table(items: Sequence[QueueItem]) -> str:
    """The work list as aligned text columns (numbers right-aligned)."""
    rows = [list(COLUMNS), *(_row(k, i) for k, i in enumerate(items, 1))]
    widths = [max(len(r[c]) for r in rows) for c in range(len(COLUMNS))]
    right = {"rank", "priority", "pd", "exposure", "dpd", "open_alerts"}
    lines = []
    for r in rows:
        cells = [
            v.rjust(w) if name in right else v.ljust(w)
            for name, v, w in zip(COLUMNS, r, widths, strict=True)
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def as_csv(items: Sequence[QueueItem]) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(COLUMNS)
    for k, item in enumerate(items, 1):
        w.writerow(_row(k, item))
    return out.getvalue()


@click.command("queue")
@click.option(
    "--worker",
    "workers",
    multiple=True,
    required=True,
    metavar="URL",
    help="A worker's web address (http://host:port); give every worker of the app",
)
@click.option(
    "--capacity",
    type=click.IntRange(1, MAX_LIMIT),
    required=True,
    help="Customers the team can work today: the length of the list",
)
@click.option(
    "--token",
    envvar="RISKMON_API_TOKEN",
    default=None,
    help="The workers' API bearer token  [env RISKMON_API_TOKEN]",
)
@click.option(
    "--cafile",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="CA (or self-signed certificate) to verify https workers against",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "csv"]),
    default="table",
    show_default=True,
)
@click.option(
    "--max-dpd",
    type=click.IntRange(0, 99_999),
    default=None,
    help="Only customers at most this many days past due (e.g. 89: those already in default "
    "go to recovery, not to the early-warning list)",
)
@click.option("--timeout", type=float, default=10.0, show_default=True, help="Seconds per worker")
def queue(
    workers: tuple[str, ...],
    capacity: int,
    token: str | None,
    cafile: str | None,
    fmt: str,
    max_dpd: int | None,
    timeout: float,
) -> None:
    """Today's work list: the customers with open alerts across the workers, highest expected
    loss (PD x exposure) first, CAPACITY of them. Every worker must answer: a list missing one
    worker's customers would look complete."""
    urls = list(dict.fromkeys(worker_url(w) for w in workers))
    answers = [fetch(url, capacity, token, cafile, timeout, max_dpd) for url in urls]
    items = merge([a.items for a in answers], capacity)
    waiting = sum(a.customers for a in answers)
    if fmt == "json":
        doc = {"capacity": capacity, "customers_with_open_alerts": waiting, "items": items}
        click.echo(msgspec.json.format(msgspec.json.encode(doc), indent=1).decode())
    elif fmt == "csv":
        click.echo(as_csv(items), nl=False)
    else:
        click.echo(table(items))
        total = sum(i.priority for i in items)
        click.echo(
            f"{len(items):,} of {waiting:,} customers with open alerts"
            f"{'' if max_dpd is None else f' at {max_dpd} DPD or less'} on {len(urls)} "
            f"worker(s); expected loss in this list {total:,.2f}"
        )


COMMANDS: list[click.Command] = [queue]
