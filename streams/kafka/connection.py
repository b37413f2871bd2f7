"""Kafka connection settings (bootstrap servers, SASL, TLS) in one frozen object.

Every riskmon command that talks to Kafka builds one :class:`KafkaSettings` from its flags or the
``RISKMON_*`` environment variables and asks it for the kwargs of the client it uses: kafka-python
(admin, CLI tools), aiokafka (bulk producing) or Faust (the worker's ``broker`` URL list and
``broker_credentials``). Combinations that cannot work are refused with an ``InputError`` before
any connection is tried. The password never appears in ``repr`` or in any message.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import wraps
from pathlib import Path
from typing import Any

import click

from scoring.errors import InputError

DEFAULT_BROKER = "127.0.0.1:9092"
PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")

ENV = {
    "broker": "RISKMON_BROKER",
    "security_protocol": "RISKMON_SECURITY_PROTOCOL",
    "sasl_mechanism": "RISKMON_SASL_MECHANISM",
    "username": "RISKMON_SASL_USERNAME",
    "password": "RISKMON_SASL_PASSWORD",
    "cafile": "RISKMON_SSL_CAFILE",
    "certfile": "RISKMON_SSL_CERTFILE",
    "keyfile": "RISKMON_SSL_KEYFILE",
    "check_hostname": "RISKMON_SSL_CHECK_HOSTNAME",
}


def parse_bootstrap(value: str) -> tuple[str, ...]:
    """``"h1:9092,kafka://h2:9093"`` -> ``("h1:9092", "h2:9093")``; each entry needs a port."""
    servers: list[str] = []
    for raw in value.split(","):
        item = raw.strip().removeprefix("kafka://").rstrip("/")
        if not item:
            continue
        host, sep, port = item.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise InputError(f"broker address must be host:port, got {raw.strip()!r}")
        servers.append(item)
    if not servers:
        raise InputError("no broker address given (flag --broker or RISKMON_BROKER)")
    return tuple(servers)


def _flag(value: str) -> bool:
    v = value.strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off"):
        return False
    raise InputError(f"expected true/false, got {value!r}")


@dataclass(frozen=True, slots=True)
class KafkaSettings:
    """Where Kafka is and how to authenticate. Validated on construction."""

    bootstrap: tuple[str, ...] = (DEFAULT_BROKER,)
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    cafile: Path | None = None
    certfile: Path | None = None
    keyfile: Path | None = None
    check_hostname: bool = True

    def __post_init__(self) -> None:
        if not self.bootstrap:
            raise InputError("no broker address given (flag --broker or RISKMON_BROKER)")
        if self.security_protocol not in PROTOCOLS:
            raise InputError(
                f"security protocol must be one of {', '.join(PROTOCOLS)}, "
                f"got {self.security_protocol!r}"
            )
        sasl = self.security_protocol.startswith("SASL_")
        tls = self.security_protocol.endswith("SSL")
        if sasl:
            if self.sasl_mechanism not in MECHANISMS:
                raise InputError(
                    f"SASL mechanism must be one of {', '.join(MECHANISMS)}, "
                    f"got {self.sasl_mechanism!r}"
                )
            if not self.username or not self.password:
                raise InputError(
                    f"{self.security_protocol} needs a SASL username and password "
                    "(RISKMON_SASL_USERNAME / RISKMON_SASL_PASSWORD)"
                )
        elif self.sasl_mechanism or self.username or self.password:
            raise InputError(
                f"SASL mechanism/username/password given but the security protocol is "
                f"{self.security_protocol}: use SASL_PLAINTEXT or SASL_SSL"
            )
        files = {"CA file": self.cafile, "certificate": self.certfile, "key": self.keyfile}
        if not tls and any(files.values()):
            raise InputError(
                f"TLS files given but the security protocol is {self.security_protocol}: "
                "use SSL or SASL_SSL"
            )
        if self.keyfile and not self.certfile:
            raise InputError("a TLS key file needs its certificate file (RISKMON_SSL_CERTFILE)")
        for what, path in files.items():
            if path is not None and not path.is_file():
                raise InputError(f"TLS {what} not found: {path}")

    @classmethod
    def from_env(
        cls,
        broker: str | None = None,
        *,
        security_protocol: str | None = None,
        sasl_mechanism: str | None = None,
        username: str | None = None,
        password: str | None = None,
        cafile: str | Path | None = None,
        certfile: str | Path | None = None,
        keyfile: str | Path | None = None,
        check_hostname: bool | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> KafkaSettings:
        """Build from explicit values, falling back to ``RISKMON_*`` variables, then defaults."""
        env = os.environ if environ is None else environ

        def pick(value: Any, key: str) -> Any:
            if value is not None and value != "":
                return value
            return env.get(ENV[key]) or None

        protocol = str(pick(security_protocol, "security_protocol") or "PLAINTEXT").upper()
        mechanism = pick(sasl_mechanism, "sasl_mechanism")
        if mechanism is None and protocol.startswith("SASL_"):
            mechanism = "PLAIN"
        hostname = check_hostname
        if hostname is None:
            raw = env.get(ENV["check_hostname"])
            hostname = _flag(raw) if raw else True

        def path(value: Any, key: str) -> Path | None:
            p = pick(value, key)
            return Path(p) if p is not None else None

        return cls(
            bootstrap=parse_bootstrap(str(pick(broker, "broker") or DEFAULT_BROKER)),
            security_protocol=protocol,
            sasl_mechanism=str(mechanism).upper() if mechanism is not None else None,
            username=pick(username, "username"),
            password=pick(password, "password"),
            cafile=path(cafile, "cafile"),
            certfile=path(certfile, "certfile"),
            keyfile=path(keyfile, "keyfile"),
            check_hostname=hostname,
        )

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")

    def describe(self) -> str:
        """One line for logs and CLI output: no password."""
        auth = f" {self.sasl_mechanism} as {self.username}" if self.uses_sasl else ""
        return f"{','.join(self.bootstrap)} ({self.security_protocol}{auth})"

    def ssl_context(self) -> ssl.SSLContext | None:
        """A client TLS context (system CAs unless a CA file is given), or None without TLS."""
        if not self.uses_tls:
            return None
        try:
            ctx = ssl.create_default_context(
                cafile=str(self.cafile) if self.cafile else None,
            )
            if self.certfile:
                ctx.load_cert_chain(str(self.certfile), str(self.keyfile) if self.keyfile else None)
        except (ssl.SSLError, OSError) as exc:
            raise InputError(f"cannot load TLS files: {exc}") from None
        ctx.check_hostname = self.check_hostname
        return ctx

    def kafka_python_kwargs(self) -> dict[str, Any]:
        """kwargs for kafka-python's KafkaAdminClient / KafkaProducer / KafkaConsumer."""
        kw: dict[str, Any] = {
            "bootstrap_servers": list(self.bootstrap),
            "security_protocol": self.security_protocol,
        }
        if self.uses_sasl:
            kw |= {
                "sasl_mechanism": self.sasl_mechanism,
                "sasl_plain_username": self.username,
                "sasl_plain_password": self.password,
            }
        if self.uses_tls:
            kw["ssl_context"] = self.ssl_context()
            kw["ssl_check_hostname"] = self.check_hostname
        return kw

    def aiokafka_kwargs(self) -> dict[str, Any]:
        """kwargs for aiokafka's AIOKafkaProducer / AIOKafkaConsumer."""
        kw: dict[str, Any] = {
            "bootstrap_servers": ",".join(self.bootstrap),
            "security_protocol": self.security_protocol,
        }
        if self.uses_sasl:
            kw |= {
                "sasl_mechanism": self.sasl_mechanism,
                "sasl_plain_username": self.username,
                "sasl_plain_password": self.password,
            }
        if self.uses_tls:
            kw["ssl_context"] = self.ssl_context()
        return kw

    def faust_broker(self) -> list[str]:
        """The ``broker`` argument of ``faust.App``: ``["kafka://host:port", ...]``."""
        return [f"kafka://{s}" for s in self.bootstrap]

    def faust_credentials(self) -> Any:
        """``broker_credentials`` for ``faust.App``: SASL or SSL credentials, None for PLAINTEXT."""
        import faust

        if self.uses_sasl:
            return faust.SASLCredentials(
                username=self.username,
                password=self.password,
                ssl_context=self.ssl_context(),
                mechanism=self.sasl_mechanism,
            )
        if self.uses_tls:
            return faust.SSLCredentials(self.ssl_context())
        return None

    def faust_app_kwargs(self) -> dict[str, Any]:
        """``broker`` and ``broker_credentials`` together, to splat into ``faust.App(...)``."""
        return {"broker": self.faust_broker(), "broker_credentials": self.faust_credentials()}


_OPTIONS: list[tuple[str, str, dict[str, Any]]] = [
    ("--broker", "broker", {"help": "Kafka bootstrap servers, host:port[,host:port]"}),
    (
        "--security-protocol",
        "security_protocol",
        {"type": click.Choice(PROTOCOLS, case_sensitive=False), "help": "Default PLAINTEXT"},
    ),
    (
        "--sasl-mechanism",
        "sasl_mechanism",
        {"type": click.Choice(MECHANISMS, case_sensitive=False), "help": "Default PLAIN"},
    ),
    ("--sasl-username", "username", {"help": "SASL username"}),
    ("--sasl-password", "password", {"help": "SASL password (prefer the environment variable)"}),
    ("--ssl-cafile", "cafile", {"help": "CA bundle (PEM) to verify the brokers"}),
    ("--ssl-certfile", "certfile", {"help": "Client certificate (PEM) for mutual TLS"}),
    ("--ssl-keyfile", "keyfile", {"help": "Client key (PEM) for mutual TLS"}),
]


def kafka_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Click decorator: adds the Kafka connection flags and passes one ``kafka: KafkaSettings``.

    Each flag falls back to its ``RISKMON_*`` variable (validation happens when the command runs,
    so ``--help`` works whatever the environment holds).
    """

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        values = {key: kwargs.pop(f"kafka_{key}") for _, key, _ in _OPTIONS}
        check = kwargs.pop("kafka_check_hostname")
        kwargs["kafka"] = KafkaSettings.from_env(**values, check_hostname=check)
        return func(*args, **kwargs)

    decorated: Callable[..., Any] = click.option(
        "--ssl-check-hostname/--no-ssl-check-hostname",
        "kafka_check_hostname",
        default=None,
        help=f"Verify the broker's hostname in its certificate (default on)  "
        f"[env {ENV['check_hostname']}]",
    )(wrapper)
    for flag, key, extra in reversed(_OPTIONS):
        extra = dict(extra)
        extra["help"] = f"{extra['help']}  [env {ENV[key]}]"
        decorated = click.option(flag, f"kafka_{key}", default=None, **extra)(decorated)
    return decorated
