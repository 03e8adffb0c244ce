"""Configuration shared by every service, read from environment variables.

Each service subclasses `CommonSettings` with its own fields; a field `foo_bar` is read from
the variable `CRM_FOO_BAR`, else `FOO_BAR`. Every default is documented in
docs/configuration.md.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

KafkaSecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
KafkaSaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"]


# Names like HOST, PORT and TIMEZONE are set by shells, platforms and other programs: every
# setting may carry this prefix, which wins over the bare name (kept so that existing
# deployments go on working).
ENV_PREFIX = "CRM_"


class CommonSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore", frozen=True)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Arguments first, then `CRM_FOO`, then `FOO`."""
        prefixed = EnvSettingsSource(settings_cls, env_prefix=ENV_PREFIX)
        return init_settings, prefixed, env_settings, dotenv_settings, file_secret_settings

    database_url: str = Field(
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        description="PostgreSQL DSN. `make run` sets it to the embedded server. For TLS add "
        "`?sslmode=verify-full&sslrootcert=/path/ca.pem` (deploy/README.md, Transport).",
    )
    kafka_bootstrap_servers: str = Field(
        default="127.0.0.1:9092", description="Kafka bootstrap servers, comma-separated."
    )
    host: str = Field(default="127.0.0.1", description="Interface the HTTP server binds to.")
    port: int = Field(default=0, description="HTTP port; 0 means the service's default port.")
    topic_partitions: int = Field(default=12, ge=1, description="Partitions per topic.")
    topic_replication_factor: int = Field(default=1, ge=1)
    reporting_currency: str = Field(
        default="USD",
        pattern=r"^[A-Z]{3}$",
        description="The deployment's one reporting currency (ISO 4217).",
    )
    timezone: str = Field(
        default="UTC", description="IANA zone that defines a calendar day for reports and RFM."
    )
    log_level: str = Field(default="INFO")
    db_pool_min: int = Field(default=1, ge=1)
    db_pool_max: int = Field(default=10, ge=1)
    consumer_max_batch: int = Field(
        default=2000, ge=1, description="Most records a consumer applies in one transaction."
    )
    consumer_session_timeout_ms: int = Field(
        default=10_000, ge=1000, description="Consumer group session timeout."
    )
    consumer_max_failed_attempts: int = Field(
        default=5,
        ge=1,
        description="Attempts at the same batch that may fail in a row before readiness says "
        "the consumer is stuck (it keeps retrying).",
    )
    dedupe_window_seconds: int = Field(
        default=3600,
        ge=1,
        description="How long a consumer keeps the ids of the events it applied. Beyond it, "
        "a redelivered event is recognised by its position in its log (per partition), so "
        "the window must outlast the longest re-publish after a broker loses its log.",
    )
    future_tolerance_seconds: int = Field(
        default=300, ge=0, description="How far in the future an event's time may be."
    )
    outbox_backlog_limit: int = Field(
        default=2_000_000,
        ge=1,
        description="Events waiting in an outbox beyond which the service sheds load (503) and "
        "reports not ready: the broker is too slow or away.",
    )
    metadata_max_age_ms: int = Field(
        default=5_000,
        ge=500,
        description="How often clients refresh topic metadata (finds re-created topics).",
    )
    admin_key_sha256: str = Field(
        default="",
        pattern=r"^([0-9a-f]{64})?$",
        description="SHA-256 (hex) of a bootstrap admin token accepted without being issued: "
        "for automation that must create the first keys. Empty: none.",
    )
    key_signing_secret: SecretStr | None = Field(
        default=None,
        min_length=32,
        description="Secret (at least 32 characters) with which `crm keys` signs key events "
        "(HMAC-SHA256) and every service checks them: a key event without a valid signature "
        "is dead-lettered, so even a writer of crm.keys cannot mint or revoke a key. The same "
        "value in every service. Unset: no issued key is accepted (the bootstrap admin key "
        "still is); `make run` keeps one in .data/key-signing-secret.",
    )
    # One rule for scoring (churned, forgotten) and reporting (lost, active): a customer
    # silent this long is lost. The services' former names are read as well.
    churn_after_days: int = Field(
        default=365,
        ge=1,
        le=3660,
        validation_alias=AliasChoices(
            "crm_churn_after_days",
            "churn_after_days",
            "scoring_churn_after_days",
            "reporting_churn_after_days",
        ),
        description="Days without a purchase after which a customer is lost: churned and "
        "forgotten in scoring, lost (not active) in reporting's customer base and churn rate.",
    )
    read_wait_max_seconds: float = Field(
        default=10.0,
        ge=0,
        le=60,
        description="The longest a read with X-CRM-Min-Position waits for its receipt to be "
        "applied (X-CRM-Max-Wait asks for less).",
    )
    api_key_cache_seconds: float = Field(
        default=5.0,
        ge=0,
        description="How long a service trusts a key it looked up; a revocation takes effect "
        "within this time plus the broker's delivery.",
    )
    auth_failure_burst: int = Field(
        default=20,
        ge=1,
        description="Failed authentications (unknown, revoked or expired key) a client "
        "address may make at once; beyond them and AUTH_FAILURES_PER_MINUTE it gets 429 with "
        "Retry-After, without a database lookup, for any key the service has not cached. The "
        "address is the peer's, or the X-Forwarded-For of a proxy uvicorn trusts "
        "(FORWARDED_ALLOW_IPS).",
    )
    auth_failures_per_minute: float = Field(
        default=60,
        gt=0,
        description="How fast an address's budget of failed authentications refills.",
    )
    kafka_security_protocol: KafkaSecurityProtocol = Field(
        default="PLAINTEXT",
        description="How clients talk to the brokers: PLAINTEXT, SSL (TLS), SASL_PLAINTEXT or "
        "SASL_SSL (SASL over TLS: what managed clusters use).",
    )
    kafka_ssl_cafile: str | None = Field(
        default=None,
        description="PEM file of the CAs that may sign the brokers' certificates (SSL and "
        "SASL_SSL). Unset: the system's CAs. Host names are always checked.",
    )
    kafka_ssl_certfile: str | None = Field(
        default=None, description="PEM client certificate, for brokers that require mutual TLS."
    )
    kafka_ssl_keyfile: str | None = Field(
        default=None, description="PEM private key of KAFKA_SSL_CERTFILE (unencrypted)."
    )
    kafka_sasl_mechanism: KafkaSaslMechanism | None = Field(
        default=None,
        description="SASL mechanism with SASL_PLAINTEXT or SASL_SSL: SCRAM-SHA-256, "
        "SCRAM-SHA-512, PLAIN (user name and password) or OAUTHBEARER (a bearer token).",
    )
    kafka_sasl_username: str | None = Field(
        default=None, description="User name for SCRAM and PLAIN."
    )
    kafka_sasl_password: SecretStr | None = Field(
        default=None, description="Password for SCRAM and PLAIN."
    )
    kafka_sasl_oauth_token: SecretStr | None = Field(
        default=None,
        description="OAUTHBEARER: a fixed bearer token. It cannot be refreshed without a "
        "restart; prefer KAFKA_SASL_OAUTH_TOKEN_FILE.",
    )
    kafka_sasl_oauth_token_file: str | None = Field(
        default=None,
        description="OAUTHBEARER: a file holding the bearer token, read again at every "
        "(re)authentication, so a sidecar or a projected volume can renew it.",
    )

    @model_validator(mode="after")
    def _kafka_security_is_complete(self) -> CommonSettings:
        """Refuse at start-up what would otherwise fail at the first broker connection, or
        silently send a password to a broker that did not ask for one."""
        uses_sasl = self.kafka_security_protocol.startswith("SASL_")
        mechanism = self.kafka_sasl_mechanism
        if uses_sasl and mechanism is None:
            raise ValueError(f"{self.kafka_security_protocol} needs KAFKA_SASL_MECHANISM")
        if not uses_sasl and mechanism is not None:
            raise ValueError("KAFKA_SASL_MECHANISM needs a SASL_* KAFKA_SECURITY_PROTOCOL")
        if mechanism in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512") and (
            not self.kafka_sasl_username or self.kafka_sasl_password is None
        ):
            raise ValueError(f"{mechanism} needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD")
        token_sources = (self.kafka_sasl_oauth_token, self.kafka_sasl_oauth_token_file)
        if mechanism == "OAUTHBEARER" and sum(s is not None for s in token_sources) != 1:
            raise ValueError(
                "OAUTHBEARER needs one of KAFKA_SASL_OAUTH_TOKEN and KAFKA_SASL_OAUTH_TOKEN_FILE"
            )
        tls_files = (self.kafka_ssl_cafile, self.kafka_ssl_certfile, self.kafka_ssl_keyfile)
        if self.kafka_security_protocol in ("PLAINTEXT", "SASL_PLAINTEXT") and any(tls_files):
            raise ValueError(
                f"KAFKA_SSL_* files given but {self.kafka_security_protocol} uses no TLS"
            )
        if (self.kafka_ssl_certfile is None) != (self.kafka_ssl_keyfile is None):
            raise ValueError("KAFKA_SSL_CERTFILE and KAFKA_SSL_KEYFILE go together")
        return self
