"""Kafka TLS and SASL settings, and what aiokafka receives for them.

The embedded broker (Tansu 0.6.0) cannot serve TLS, and its SASL accepts any PLAIN password
and needs SCRAM users created through an API aiokafka does not speak, so no broker checks
these settings here: the expectations are aiokafka's documented arguments.
"""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from pydantic import ValidationError

from shared import kafka
from shared.settings import CommonSettings


@pytest.fixture(scope="module")
def ca_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("ca")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "2", "-subj", "/CN=transport test CA",
         "-keyout", "ca.key", "-out", "ca.pem"],
        cwd=folder, check=True, capture_output=True,
    )  # fmt: skip
    return folder / "ca.pem"


def test_by_default_clients_speak_plaintext_without_sasl() -> None:
    assert kafka.security_options(CommonSettings()) == {"security_protocol": "PLAINTEXT"}


def test_scram_over_tls_reads_the_environment_and_checks_the_broker(
    ca_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("KAFKA_SSL_CAFILE", str(ca_file))
    monkeypatch.setenv("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "crm-scoring")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", "s3cret")
    options = kafka.security_options(CommonSettings())
    context = options.pop("ssl_context")
    assert options == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "crm-scoring",
        "sasl_plain_password": "s3cret",
    }
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    (only_trusted,) = context.get_ca_certs()  # our CA, and not the system's
    assert only_trusted["subject"] == ((("commonName", "transport test CA"),),)


def test_tls_without_a_ca_file_trusts_the_system_cas() -> None:
    options = kafka.security_options(CommonSettings(kafka_security_protocol="SSL"))
    assert set(options) == {"security_protocol", "ssl_context"}
    context = options["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname


async def test_oauthbearer_reads_the_token_file_at_every_authentication(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("first-token\n")
    settings = CommonSettings(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="OAUTHBEARER",
        kafka_sasl_oauth_token_file=str(token_file),
    )
    provider = kafka.security_options(settings)["sasl_oauth_token_provider"]
    assert isinstance(provider, kafka.TokenFileProvider)
    assert await provider.token() == "first-token"
    token_file.write_text("renewed-token\n")  # what a sidecar renewing the token does
    assert await provider.token() == "renewed-token"


async def test_oauthbearer_with_a_token_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("KAFKA_SASL_MECHANISM", "OAUTHBEARER")
    monkeypatch.setenv("KAFKA_SASL_OAUTH_TOKEN", "env-token")
    options = kafka.security_options(CommonSettings())
    assert options["sasl_mechanism"] == "OAUTHBEARER"
    assert "sasl_plain_password" not in options
    assert await options["sasl_oauth_token_provider"].token() == "env-token"  # type: ignore[attr-defined]


async def test_producer_consumer_and_admin_all_get_the_security_options(ca_file: Path) -> None:
    settings = CommonSettings(
        kafka_security_protocol="SASL_SSL",
        kafka_ssl_cafile=str(ca_file),
        kafka_sasl_mechanism="SCRAM-SHA-256",
        kafka_sasl_username="crm",
        kafka_sasl_password="pw",
    )
    producer: AIOKafkaProducer = kafka.producer(settings)
    consumer: AIOKafkaConsumer = kafka.consumer(settings, "group")
    admin: AIOKafkaAdminClient = kafka.admin(settings)
    # The clients are built, not started: no broker is contacted.
    for client in (producer.client, consumer._client, admin._client):
        assert client._security_protocol == "SASL_SSL"
        assert client._sasl_mechanism == "SCRAM-SHA-256"
        assert client._sasl_plain_username == "crm"
        assert client._ssl_context.get_ca_certs()[0]["subject"] == (
            (("commonName", "transport test CA"),),
        )


@pytest.mark.parametrize(
    ("settings", "complaint"),
    [
        ({"kafka_security_protocol": "SASL_SSL"}, "needs KAFKA_SASL_MECHANISM"),
        ({"kafka_sasl_mechanism": "PLAIN"}, "SASL_"),
        (
            {"kafka_security_protocol": "SASL_SSL", "kafka_sasl_mechanism": "SCRAM-SHA-256"},
            "KAFKA_SASL_PASSWORD",
        ),
        (
            {"kafka_security_protocol": "SASL_SSL", "kafka_sasl_mechanism": "OAUTHBEARER"},
            "one of",
        ),
        (
            {
                "kafka_security_protocol": "SASL_SSL",
                "kafka_sasl_mechanism": "OAUTHBEARER",
                "kafka_sasl_oauth_token": "a",
                "kafka_sasl_oauth_token_file": "/b",
            },
            "one of",
        ),
        ({"kafka_ssl_cafile": "/ca.pem"}, "uses no TLS"),
        ({"kafka_security_protocol": "SSL", "kafka_ssl_certfile": "/c.pem"}, "go together"),
        ({"kafka_security_protocol": "TLS"}, "PLAINTEXT"),
    ],
)
def test_incomplete_or_contradictory_security_settings_are_refused_at_start(
    settings: dict[str, str], complaint: str
) -> None:
    with pytest.raises(ValidationError, match=complaint):
        CommonSettings(**settings)  # type: ignore[arg-type]
