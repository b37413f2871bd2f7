"""riskmon's topic names and their explicit creation and checking (kafka-python admin client).

All six topics are keyed by raw ``customer_id`` bytes and must have the same partition count, so
that one worker owns a customer on every input topic and in its table changelog
(co-partitioning). Topics are always created explicitly: Tansu, and Kafka with
``auto.create.topics.enable``, would otherwise create them silently with a default count.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from scoring.errors import InputError
from streams.kafka.connection import KafkaSettings

_LEGAL = re.compile(r"^[A-Za-z0-9._-]{1,200}$")
TOPIC_ALREADY_EXISTS = 36

#: Record header set by riskmon's producer on input records: 8 bytes chain id (one per producing
#: process) + 8 bytes big-endian sequence number, counting the records it sent to one partition
#: number of one input topic set. The worker's topic alignment uses it to merge the three input
#: topics of a partition in exactly the order they were sent (see
#: ``streams.kafka.aligner``).
ORDER_HEADER = "riskmon-seq"


@dataclass(frozen=True, slots=True)
class TopicNames:
    """The six topic names, ``<prefix>.<role>``."""

    prefix: str = "riskmon"

    def __post_init__(self) -> None:
        if not _LEGAL.match(self.prefix):
            raise InputError(
                f"topic prefix must be 1-200 characters of [A-Za-z0-9._-], got {self.prefix!r}"
            )

    def _name(self, role: str) -> str:
        return f"{self.prefix}.{role}"

    @property
    def loans(self) -> str:
        return self._name("loans")

    @property
    def repayments(self) -> str:
        return self._name("repayments")

    @property
    def transactions(self) -> str:
        return self._name("transactions")

    @property
    def alerts(self) -> str:
        return self._name("alerts")

    @property
    def grades(self) -> str:
        return self._name("grades")

    @property
    def deadletter(self) -> str:
        return self._name("deadletter")

    @property
    def models(self) -> str:
        """The scorecards (``riskmon publish``): one partition, compacted, keyed by role; not
        co-partitioned with the others, so not in :attr:`all`."""
        return self._name("models")

    @property
    def inputs(self) -> tuple[str, str, str]:
        return (self.loans, self.repayments, self.transactions)

    @property
    def outputs(self) -> tuple[str, str, str]:
        return (self.alerts, self.grades, self.deadletter)

    @property
    def all(self) -> tuple[str, ...]:
        return (*self.inputs, *self.outputs)

    def role(self, topic: str) -> str:
        """``"riskmon.loans"`` -> ``"loans"`` (the keys of ``schemas.events.INPUT_TYPES``)."""
        head, _, role = topic.rpartition(".")
        if head != self.prefix or topic not in self.all:
            raise InputError(f"{topic!r} is not one of the {self.prefix}.* topics")
        return role

    def by_role(self, role: str) -> str:
        """``"loans"`` -> ``"riskmon.loans"``; roles as in ``schemas.events`` type maps."""
        name = self._name(role)
        if name not in self.all:
            raise InputError(
                f"unknown topic role {role!r}; one of "
                "loans, repayments, transactions, alerts, grades, deadletter"
            )
        return name


def _topic_list(names: TopicNames | Iterable[str]) -> list[str]:
    return list(names.all) if isinstance(names, TopicNames) else list(names)


@contextmanager
def admin_client(settings: KafkaSettings) -> Iterator[Any]:
    """A kafka-python admin client, closed on exit; unreachable brokers are an InputError."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    try:
        admin = KafkaAdminClient(
            client_id="riskmon-admin", request_timeout_ms=30000, **settings.kafka_python_kwargs()
        )
    except KafkaError as exc:
        raise InputError(f"cannot reach Kafka at {settings.describe()}: {exc}") from None
    try:
        yield admin
    finally:
        admin.close()


def partition_counts(admin: Any, topics: Iterable[str]) -> dict[str, int | None]:
    """Partition count of each topic; None where the topic does not exist."""
    wanted = list(topics)
    out: dict[str, int | None] = dict.fromkeys(wanted)
    for t in admin.describe_topics(wanted):
        if t.get("error_code", 0) == 0 and t.get("partitions"):
            out[t["name"]] = len(t["partitions"])
    return out


def create_topics(
    settings: KafkaSettings,
    names: TopicNames | Iterable[str],
    partitions: int,
    replication: int = 1,
) -> dict[str, str]:
    """Create every topic with ``partitions`` partitions; idempotent.

    Returns ``{topic: "created" | "exists"}``. An existing topic with another partition count
    raises ``InputError``: it would break co-partitioning, and Kafka cannot shrink a topic.
    """
    from kafka.admin import NewTopic

    if partitions < 1:
        raise InputError(f"partitions must be >= 1, got {partitions}")
    if replication < 1:
        raise InputError(f"replication must be >= 1, got {replication}")
    topics = _topic_list(names)
    with admin_client(settings) as admin:
        existing = partition_counts(admin, topics)
        _refuse_mismatch(existing, partitions)
        missing = [t for t, n in existing.items() if n is None]
        status = {t: "exists" for t, n in existing.items() if n is not None}
        if missing:
            result = admin.create_topics(
                [NewTopic(t, partitions, replication) for t in missing], raise_errors=False
            )
            for r in result["topics"]:
                code = r.get("error_code", 0)
                if code not in (0, TOPIC_ALREADY_EXISTS):
                    raise InputError(
                        f"cannot create topic {r['name']}: error {code} {r.get('error_message')}"
                    )
                status[r["name"]] = "created" if code == 0 else "exists"
            # a concurrent creator may have won the race with another count: check again
            _refuse_mismatch(partition_counts(admin, missing), partitions)
    return {t: status[t] for t in topics}


def create_models_topic(settings: KafkaSettings, names: TopicNames) -> str:
    """Create the models topic (one partition, compacted: the latest record of each role is
    what counts); idempotent. Returns "created" or "exists"."""
    from kafka.admin import NewTopic

    topic = names.models
    with admin_client(settings) as admin:
        if partition_counts(admin, [topic])[topic] is not None:
            return "exists"
        new = NewTopic(topic, 1, 1, topic_configs={"cleanup.policy": "compact"})
        result = admin.create_topics([new], raise_errors=False)
        for r in result["topics"]:
            code = r.get("error_code", 0)
            if code not in (0, TOPIC_ALREADY_EXISTS):
                raise InputError(
                    f"cannot create topic {topic}: error {code} {r.get('error_message')}"
                )
            return "created" if code == 0 else "exists"
    return "exists"


def _refuse_mismatch(counts: dict[str, int | None], partitions: int) -> None:
    wrong = {t: n for t, n in counts.items() if n is not None and n != partitions}
    if wrong:
        listing = ", ".join(f"{t} has {n}" for t, n in wrong.items())
        raise InputError(
            f"topics exist with a partition count other than {partitions} ({listing}); all "
            "riskmon topics need the same count (co-partitioning): use --partitions to match "
            "or delete the topics"
        )


def check_topics(
    settings: KafkaSettings,
    names: TopicNames | Iterable[str],
    partitions: int | None = None,
) -> int:
    """Check every topic exists with one common partition count (``partitions`` if given).

    Returns that count; raises ``InputError`` listing missing or mismatched topics.
    """
    topics = _topic_list(names)
    with admin_client(settings) as admin:
        counts = partition_counts(admin, topics)
    missing = [t for t, n in counts.items() if n is None]
    if missing:
        raise InputError(
            f"missing topics: {', '.join(missing)} (create them with `riskmon broker` or "
            "your cluster's tooling; never rely on auto-creation)"
        )
    found = {n for n in counts.values() if n is not None}
    expected = partitions if partitions is not None else max(found)
    if found != {expected}:
        listing = ", ".join(f"{t}={n}" for t, n in counts.items())
        raise InputError(
            f"topics must all have {expected} partitions (co-partitioning), found {listing}"
        )
    return expected
