"""The worker's settings: each defined once, with its default, help text and environment variable.

:class:`WorkerConfig` is one frozen object, validated on construction; ``riskmon worker``'s flags
are derived from its fields by :func:`worker_options` (``--web-port`` / ``RISKMON_WEB_PORT`` for
``web_port``), so a setting, its default and its help exist in one place only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields
from functools import wraps
from pathlib import Path
from typing import Any

import click

from scoring.artifact import default_scorecard_path
from scoring.errors import InputError

STORES = ("memory://", "rocksdb://")


def _setting(default: Any, help: str, kind: Any = None, factory: Any = None) -> Any:
    """A :class:`WorkerConfig` field with its help text and click type (``kind``: a click type;
    None takes the default's type; a ``click.Path`` value is converted to ``Path``)."""
    meta = {"help": help, "kind": kind}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


_DIR = click.Path(file_okay=False)
_FILE = click.Path(dir_okay=False)


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    """Everything a riskmon worker needs besides the Kafka connection (``KafkaSettings``)."""

    topic_prefix: str = _setting("riskmon", "Prefix of every topic name")
    partitions: int = _setting(4, "Partitions of every topic (must match)", click.IntRange(1))
    scorecard: Path = _setting(
        None, "Scorecard JSON (default: the bundled one)", _FILE, factory=default_scorecard_path
    )
    store: str = _setting("memory://", "Table store: memory:// or rocksdb://")
    web_host: str = _setting("127.0.0.1", "Bind address of /metrics, /customers/{id}, /queue")
    web_port: int = _setting(6066, "Port of the web server", click.IntRange(1, 65535))
    api_token: str | None = _setting(
        None,
        "Bearer token the read API (/customers, /queue) requires (prefer the environment "
        "variable); none: open",
    )
    metrics_auth: bool = _setting(False, "Require the API token on /metrics too", click.BOOL)
    web_tls_cert: Path | None = _setting(
        None, "PEM certificate (chain) for HTTPS on the web server", _FILE
    )
    web_tls_key: Path | None = _setting(None, "PEM private key for HTTPS", _FILE)
    data_dir: Path = _setting(Path("./riskmon-data"), "Faust data dir (RocksDB files)", _DIR)
    app_id: str = _setting("riskmon", "Consumer group and changelog topic prefix")
    policy: Path | None = _setting(
        None,
        "Policy file (TOML): event bounds, alert policy, treatment; `riskmon policy` prints "
        "the defaults",
        _FILE,
    )
    lateness_days: float | None = _setting(
        None,
        "Events older than this behind a customer's newest event go to dead letter (overrides "
        "the policy file's; default 7)",
        float,
    )
    event_clock: str = _setting(
        "wall",
        "Reference for the future-event bound: wall (live) or stream (each partition's newest "
        "event time: replaying history)",
        click.Choice(["wall", "stream"]),
    )
    session_timeout: float = _setting(6.0, "Consumer session timeout, seconds")
    cache_customers: int = _setting(
        0,
        "Decoded customer entries kept in memory between batches (~5 KB each, beside ~0.9 KB per "
        "customer in the table; dropped on every rebalance); 0 decodes each touched customer "
        "from the table once per batch",
        click.IntRange(min=0),
    )
    drift_window_days: float = _setting(7.0, "Event-time window of the live score PSI/CSI")
    rescorings_dir: Path | None = _setting(
        None,
        "Append every rescoring (customer, event time, score, grade, DPD) to "
        "DIR/rescorings-PID.bin for offline evaluation",
        _DIR,
    )

    def __post_init__(self) -> None:
        if self.partitions < 1:
            raise InputError(f"partitions must be >= 1, got {self.partitions}")
        if not self.store.startswith(STORES):
            raise InputError(f"store must start with one of {', '.join(STORES)}: {self.store!r}")
        if not 0 < self.web_port < 65536:
            raise InputError(f"web port out of range: {self.web_port}")
        if self.lateness_days is not None and self.lateness_days < 0:
            raise InputError("lateness must be >= 0 days")
        if self.event_clock not in ("wall", "stream"):
            raise InputError(f"event clock must be wall or stream, got {self.event_clock!r}")
        if self.session_timeout <= 0:
            raise InputError("the session timeout must be > 0 seconds")
        if self.cache_customers < 0:
            raise InputError(f"cache_customers must be >= 0, got {self.cache_customers}")
        if self.metrics_auth and not self.api_token:
            raise InputError("metrics_auth needs an API token (RISKMON_API_TOKEN)")
        if (self.web_tls_cert is None) != (self.web_tls_key is None):
            raise InputError("HTTPS needs both web_tls_cert and web_tls_key")
        if not self.drift_window_days > 0:
            raise InputError("the drift window must be > 0 days")


def env_name(name: str) -> str:
    """The environment variable of setting ``name``."""
    return f"RISKMON_{name.upper()}"


def worker_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Click decorator: one flag per :class:`WorkerConfig` field (falling back to its
    ``RISKMON_*`` variable), passed to the command as one ``config: WorkerConfig``."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        values: dict[str, Any] = {}
        for f in fields(WorkerConfig):
            value = kwargs.pop(f"cfg_{f.name}")
            if value is None:
                continue  # the field's default (a factory, or None)
            values[f.name] = Path(value) if isinstance(f.metadata["kind"], click.Path) else value
        kwargs["config"] = WorkerConfig(**values)
        return func(*args, **kwargs)

    decorated: Callable[..., Any] = wrapper
    for f in reversed(fields(WorkerConfig)):
        default = None if f.default is MISSING else f.default
        kind = f.metadata["kind"] or (type(default) if default is not None else str)
        decorated = click.option(
            f"--{f.name.replace('_', '-')}",
            f"cfg_{f.name}",
            envvar=env_name(f.name),
            type=kind,
            default=str(default) if isinstance(default, Path) else default,
            show_default=default is not None,
            help=f"{f.metadata['help']}  [env {env_name(f.name)}]",
        )(decorated)
    return decorated
