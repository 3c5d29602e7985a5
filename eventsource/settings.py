"""Configuration from `EVENTSOURCE_*` environment variables.

Every component can also be built from plain keyword arguments; these
settings only fill in what the caller left out.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from typing import Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from eventsource.errors import ConfigurationError

_CONTEXT = re.compile(r"^[a-z][a-z0-9_\-]{0,99}$")
# librdkafka options whose values must never be printed.
_SECRET_KEYS = ("password", "secret", "token", "key.pem", "keystore", "sasl.oauthbearer.config")


def check_context(name: str) -> str:
    """`name` if it can name a bounded context (it prefixes topic names)."""
    if not _CONTEXT.match(name):
        raise ConfigurationError(
            f"context name {name!r} must be lower case letters, digits, '_' or '-',"
            " starting with a letter (it prefixes topic names)"
        )
    return name


class Settings(BaseSettings):
    """Settings shared by the store, the bus, the relay and the workers.

    Each field is read from the environment variable `EVENTSOURCE_<FIELD>`
    (`database_url` from `EVENTSOURCE_DATABASE_URL`); keyword arguments win::

        settings = Settings(database_url="postgresql://app@db/orders", context="orders")
        settings.embedded  # True: no EVENTSOURCE_KAFKA_BOOTSTRAP_SERVERS

    An `EVENTSOURCE_*` variable that no field reads is reported by the
    command with the closest known name (`unknown_variables`).
    """

    model_config = SettingsConfigDict(
        env_prefix="EVENTSOURCE_", extra="ignore", use_attribute_docstrings=True
    )

    database_url: str = "sqlite:///eventsource.db"
    """The context's database: its event store, views, positions and dead letters
    (`sqlite:///path.db` or `postgresql://user:password@host:5432/db`). Commands that
    would create a new database refuse to create it from this default: give it."""
    context: str = "default"
    """The bounded context: names its topics (`<context>.<aggregate type>`), its relay's
    transactional id and its stores in `EVENTSOURCE_STORES`."""
    kafka_bootstrap_servers: str | None = None
    """Kafka brokers (`host:9092,host2:9092`). Unset: embedded mode, where workers read
    the stores' own `events` tables as the log."""
    kafka_security_protocol: str | None = None
    """librdkafka's `security.protocol`: `PLAINTEXT`, `SSL`, `SASL_PLAINTEXT` or `SASL_SSL`."""
    kafka_sasl_mechanism: str | None = None
    """librdkafka's `sasl.mechanism`: `PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512`, ..."""
    kafka_sasl_username: str | None = None
    """librdkafka's `sasl.username`."""
    kafka_sasl_password: SecretStr | None = None
    """librdkafka's `sasl.password` (a secret: never logged or printed)."""
    kafka_ssl_ca_location: str | None = None
    """The CA certificate (PEM file) that signed the brokers' certificates."""
    kafka_ssl_certificate_location: str | None = None
    """The client certificate (PEM file), for brokers that ask for one (mutual TLS)."""
    kafka_ssl_key_location: str | None = None
    """The client certificate's private key (PEM file)."""
    kafka_ssl_key_password: SecretStr | None = None
    """The private key's password (a secret: never logged or printed)."""
    kafka_config: dict[str, SecretStr] = Field(default_factory=dict)
    """Any other librdkafka option, as JSON: `{"client.rack": "a"}`. Values are treated
    as secrets; options that exactly-once depends on cannot be overridden."""
    topic_partitions: int = 6
    """Partitions of the topics the relay creates (existing topics keep theirs)."""
    topic_prefix: str = ""
    """Prepended to every Kafka name a context owns (topics, the relay's transactional
    id, the workers' consumer groups), `staging.` say, so that several environments
    share one cluster without seeing each other. Positions keep the unprefixed names."""
    stores: dict[str, str] = Field(default_factory=dict)
    """Embedded mode: where other contexts' stores live, so that a worker can read their
    topics, as JSON: `{"orders": "sqlite:///orders.db"}`."""
    worker_name: str | None = None
    """This process's name (a pod's, a systemd instance's): shown by status, used as
    Kafka's `client.id` and, being stable across restarts, as its static group
    membership (`group.instance.id`), so that a restarted worker takes its partitions
    back at once instead of after the session timeout. Unset: `<host>-<pid>`, and
    dynamic membership."""
    heartbeat_seconds: float = Field(default=5.0, gt=0)
    """How often a running worker or relay writes its heartbeat; status calls one
    whose heartbeat is three intervals old unresponsive."""
    keys: dict[str, str] = Field(default_factory=dict)
    """Where other contexts' keys of personal data are read (their databases, by a user
    that may read `personal_data_keys`), when not in `stores`, as JSON:
    `{"customers": "postgresql://reader@db/customers"}`."""
    keys_cache_seconds: float = Field(default=60.0, ge=0)
    """How long a process trusts a key it has read (or read as deleted): a `forget`
    elsewhere takes effect here within this time."""
    tune_interpreter: bool = False
    """The `eventsource` command only: hold the garbage collector between batches and
    shorten the GIL switch interval (see `eventsource.tuning`)."""
    dashboard_token: SecretStr | None = None
    """The token `eventsource dashboard` asks for (required when it listens beyond
    loopback). Set it here rather than with `--token`, which other users of the
    machine can read in `ps`."""

    @field_validator("context")
    @classmethod
    def _valid_context(cls, value: str) -> str:
        return check_context(value)

    @field_validator("topic_prefix")
    @classmethod
    def _valid_prefix(cls, value: str) -> str:
        if not re.match(r"^[A-Za-z0-9._\-]{0,100}$", value):
            raise ConfigurationError(
                f"topic prefix {value!r} may only hold letters, digits, '.', '_' and '-'"
            )
        return value

    def store_urls(self) -> dict[str, str]:
        """Context name -> database URL of every store this process may read.

        Refuses a context given two different URLs: its own database, and
        another one in `EVENTSOURCE_STORES`.
        """
        listed = self.stores.get(self.context)
        if listed is not None and listed != self.database_url:
            raise ConfigurationError(
                f"context {self.context!r} has two databases: {_safe(self.database_url)}"
                f" (its own, EVENTSOURCE_DATABASE_URL or --url) and {_safe(listed)}"
                " (EVENTSOURCE_STORES or --stores); give it one"
            )
        return {self.context: self.database_url, **self.stores}

    @property
    def embedded(self) -> bool:
        """True when no Kafka is configured: workers read the SQL log."""
        return not self.kafka_bootstrap_servers

    def librdkafka_config(self) -> dict[str, str]:
        """The pass-through librdkafka options (secrets included; never log this)."""
        if not self.kafka_bootstrap_servers:
            raise ConfigurationError(
                "EVENTSOURCE_KAFKA_BOOTSTRAP_SERVERS is not set; Kafka is not configured"
            )
        config: dict[str, str] = {"bootstrap.servers": self.kafka_bootstrap_servers}
        optional: dict[str, Any] = {
            "security.protocol": self.kafka_security_protocol,
            "sasl.mechanism": self.kafka_sasl_mechanism,
            "sasl.username": self.kafka_sasl_username,
            "sasl.password": self.kafka_sasl_password,
            "ssl.ca.location": self.kafka_ssl_ca_location,
            "ssl.certificate.location": self.kafka_ssl_certificate_location,
            "ssl.key.location": self.kafka_ssl_key_location,
            "ssl.key.password": self.kafka_ssl_key_password,
        }
        for key, value in optional.items():
            if value is not None:
                config[key] = value.get_secret_value() if isinstance(value, SecretStr) else value
        for key, secret in self.kafka_config.items():
            config[key] = secret.get_secret_value()
        return config


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """One line per `EVENTSOURCE_*` variable that no setting reads, with the
    closest known name: a typo must not fall back to a default in silence."""
    known = {f"EVENTSOURCE_{name.upper()}" for name in Settings.model_fields}
    out = []
    for name in sorted(environ):
        if not name.startswith("EVENTSOURCE_") or name in known or name in _NOT_SETTINGS:
            continue
        close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close else ""
        out.append(f"{name} is not a setting eventsource reads{hint}")
    return out


def describe(settings: Settings) -> dict[str, Any]:
    """The resolved settings, safe to print: passwords and secrets masked."""
    out: dict[str, Any] = {}
    for name, value in settings.model_dump().items():
        shown = value
        if isinstance(value, SecretStr):
            shown = "***"
        elif name == "kafka_config":
            shown = dict.fromkeys(value, "***")
        elif name == "database_url":
            shown = _safe(value)
        elif name in ("stores", "keys"):
            shown = {k: _safe(v) for k, v in value.items()}
        out[f"EVENTSOURCE_{name.upper()}"] = shown
    return out


def _safe(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unreadable URL>"


# Variables of the project's own scripts, not settings of the library.
_NOT_SETTINGS = frozenset(
    {
        "EVENTSOURCE_EXTERNAL_SERVICES",
        "EVENTSOURCE_SERVICES_DIR",
        "EVENTSOURCE_KAFKA_PORT",
        "EVENTSOURCE_KAFKA_CONTROLLER_PORT",
        "EVENTSOURCE_KAFKA_SASL_PORT",
        "EVENTSOURCE_KAFKA_SSL_PORT",
        "EVENTSOURCE_KAFKA_MTLS_PORT",
        "EVENTSOURCE_PG_PORT",
    }
)


def redact(config: dict[str, Any]) -> dict[str, Any]:
    """A copy of a librdkafka config that is safe to log."""
    return {
        key: "***" if any(word in key for word in _SECRET_KEYS) else value
        for key, value in config.items()
    }
