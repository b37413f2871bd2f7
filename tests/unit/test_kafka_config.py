"""KafkaSettings: env/flag resolution, validation, and the kwargs each client really receives."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path
from typing import Any

import click
import faust
import pytest
from click.testing import CliRunner
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from scoring.errors import InputError
from streams.kafka.connection import KafkaSettings, kafka_options, parse_bootstrap

SECRET = "s3cr3t-Pa55word"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A self-signed CA and a client certificate/key made with the openssl CLI."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI not available")
    d = tmp_path_factory.mktemp("pki")
    ca_key, ca, key, csr, cert = (d / n for n in ("ca.key", "ca.pem", "c.key", "c.csr", "c.pem"))

    def run(*args: str | Path) -> None:
        subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca,
        "-days", "2", "-subj", "/CN=riskmon-test-ca")  # fmt: skip
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr,
        "-subj", "/CN=riskmon-client")  # fmt: skip
    run("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
        "-out", cert, "-days", "2")  # fmt: skip
    return {"ca": ca, "cert": cert, "key": key}


def app_with(settings: KafkaSettings) -> faust.App:
    """A real Faust app configured from the settings (constructed, never started)."""
    return faust.App("riskmon-test", **settings.faust_app_kwargs())


# --- resolution ------------------------------------------------------------------------------


def test_defaults_are_local_plaintext() -> None:
    s = KafkaSettings.from_env(environ={})
    assert s.bootstrap == ("127.0.0.1:9092",)
    assert s.security_protocol == "PLAINTEXT"
    kw = s.kafka_python_kwargs()
    assert kw == {"bootstrap_servers": ["127.0.0.1:9092"], "security_protocol": "PLAINTEXT"}
    assert s.faust_credentials() is None


def test_bootstrap_list_and_url_forms() -> None:
    assert parse_bootstrap("kafka://a:9092, b.example:19093,") == ("a:9092", "b.example:19093")
    s = KafkaSettings.from_env("a:1,b:2", environ={})
    app = app_with(s)
    assert [str(u) for u in app.conf.broker] == ["kafka://a:1", "kafka://b:2"]
    assert s.aiokafka_kwargs()["bootstrap_servers"] == "a:1,b:2"


@pytest.mark.parametrize(
    "bad", ["", " , ", "host", "host:", ":9092", "host:port", "h:0", "h:70000"]
)
def test_bad_bootstrap(bad: str) -> None:
    with pytest.raises(InputError, match="broker"):
        KafkaSettings.from_env(bad or ",", environ={})


def test_flags_override_environment() -> None:
    env = {
        "RISKMON_BROKER": "env-host:9092",
        "RISKMON_SECURITY_PROTOCOL": "sasl_plaintext",
        "RISKMON_SASL_MECHANISM": "SCRAM-SHA-256",
        "RISKMON_SASL_USERNAME": "env-user",
        "RISKMON_SASL_PASSWORD": SECRET,
    }
    from_env = KafkaSettings.from_env(environ=env)
    assert from_env.bootstrap == ("env-host:9092",)
    assert (from_env.security_protocol, from_env.sasl_mechanism) == (
        "SASL_PLAINTEXT",
        "SCRAM-SHA-256",
    )
    assert (from_env.username, from_env.password) == ("env-user", SECRET)
    flagged = KafkaSettings.from_env(
        "flag-host:1", sasl_mechanism="PLAIN", username="u", environ=env
    )
    assert flagged.bootstrap == ("flag-host:1",)
    assert (flagged.sasl_mechanism, flagged.username, flagged.password) == ("PLAIN", "u", SECRET)


def test_sasl_mechanism_defaults_to_plain() -> None:
    s = KafkaSettings.from_env(
        security_protocol="SASL_PLAINTEXT", username="u", password=SECRET, environ={}
    )
    assert s.sasl_mechanism == "PLAIN"


# --- SASL and TLS reach the clients ----------------------------------------------------------


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_plaintext_reaches_faust_and_clients(mechanism: str) -> None:
    s = KafkaSettings.from_env(
        "k1:9092",
        environ={
            "RISKMON_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "RISKMON_SASL_MECHANISM": mechanism,
            "RISKMON_SASL_USERNAME": "riskmon",
            "RISKMON_SASL_PASSWORD": SECRET,
        },
    )
    creds = app_with(s).conf.broker_credentials
    assert isinstance(creds, faust.SASLCredentials)
    assert (creds.username, creds.password, creds.mechanism.value) == ("riskmon", SECRET, mechanism)
    assert creds.ssl_context is None
    # what Faust's aiokafka driver hands to its consumers and producers
    auth = credentials_to_aiokafka_auth(creds)
    assert auth["security_protocol"] == "SASL_PLAINTEXT"
    assert auth["sasl_mechanism"] == mechanism
    assert (auth["sasl_plain_username"], auth["sasl_plain_password"]) == ("riskmon", SECRET)
    expected = {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": mechanism,
        "sasl_plain_username": "riskmon",
        "sasl_plain_password": SECRET,
    }
    kp = s.kafka_python_kwargs()
    assert {k: kp[k] for k in expected} == expected and "ssl_context" not in kp
    ak = s.aiokafka_kwargs()
    assert {k: ak[k] for k in expected} == expected and "ssl_context" not in ak


def test_sasl_ssl_with_ca_reaches_faust(pki: dict[str, Path]) -> None:
    s = KafkaSettings.from_env(
        "k1:9093",
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        username="riskmon",
        password=SECRET,
        cafile=pki["ca"],
        environ={},
    )
    creds = app_with(s).conf.broker_credentials
    assert isinstance(creds, faust.SASLCredentials)
    assert creds.protocol.value == "SASL_SSL"
    ctx = creds.ssl_context
    assert isinstance(ctx, ssl.SSLContext)
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    subjects = [str(c["subject"]) for c in ctx.get_ca_certs()]
    assert any("riskmon-test-ca" in s for s in subjects), subjects
    auth = credentials_to_aiokafka_auth(creds)
    assert auth["security_protocol"] == "SASL_SSL" and auth["ssl_context"] is ctx
    kp = s.kafka_python_kwargs()
    assert kp["security_protocol"] == "SASL_SSL" and isinstance(kp["ssl_context"], ssl.SSLContext)
    assert kp["ssl_check_hostname"] is True


def test_mutual_tls_reaches_faust(pki: dict[str, Path]) -> None:
    env = {
        "RISKMON_BROKER": "k1:9093",
        "RISKMON_SECURITY_PROTOCOL": "SSL",
        "RISKMON_SSL_CAFILE": str(pki["ca"]),
        "RISKMON_SSL_CERTFILE": str(pki["cert"]),
        "RISKMON_SSL_KEYFILE": str(pki["key"]),
        "RISKMON_SSL_CHECK_HOSTNAME": "false",
    }
    s = KafkaSettings.from_env(environ=env)
    creds = app_with(s).conf.broker_credentials
    assert isinstance(creds, faust.SSLCredentials)
    assert creds.protocol.value == "SSL"
    assert isinstance(creds.context, ssl.SSLContext) and creds.context.check_hostname is False
    auth = credentials_to_aiokafka_auth(creds)
    assert auth == {"security_protocol": "SSL", "ssl_context": creds.context}
    ak = s.aiokafka_kwargs()
    assert ak["security_protocol"] == "SSL" and "sasl_mechanism" not in ak


def test_tls_file_that_is_not_pem(tmp_path: Path) -> None:
    junk = tmp_path / "ca.pem"
    junk.write_text("not a certificate")
    s = KafkaSettings.from_env(security_protocol="SSL", cafile=junk, environ={})
    with pytest.raises(InputError, match="cannot load TLS files"):
        s.ssl_context()


# --- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"security_protocol": "SASL"}, "security protocol must be one of"),
        ({"security_protocol": "SASL_SSL", "username": "u"}, "username and password"),
        ({"security_protocol": "SASL_PLAINTEXT", "password": SECRET}, "username and password"),
        (
            {
                "security_protocol": "SASL_PLAINTEXT",
                "sasl_mechanism": "GSSAPI",
                "username": "u",
                "password": SECRET,
            },
            "mechanism must be one of",
        ),
        ({"username": "u", "password": SECRET}, "use SASL_PLAINTEXT or SASL_SSL"),
        ({"sasl_mechanism": "PLAIN"}, "use SASL_PLAINTEXT or SASL_SSL"),
        ({"cafile": "ca.pem"}, "use SSL or SASL_SSL"),
        ({"security_protocol": "SSL", "keyfile": "k.pem"}, "needs its certificate"),
        ({"security_protocol": "SSL", "cafile": "/nonexistent/ca.pem"}, "not found"),
    ],
)
def test_invalid_combinations(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(InputError, match=match) as info:
        KafkaSettings.from_env(environ={}, **kwargs)
    assert SECRET not in str(info.value)


def test_check_hostname_env_must_be_boolean() -> None:
    with pytest.raises(InputError, match="true/false"):
        KafkaSettings.from_env(environ={"RISKMON_SSL_CHECK_HOSTNAME": "maybe"})


def test_password_never_shown() -> None:
    s = KafkaSettings.from_env(
        security_protocol="SASL_PLAINTEXT", username="u", password=SECRET, environ={}
    )
    assert SECRET not in repr(s)
    assert SECRET not in s.describe() and "u" in s.describe()
    assert SECRET not in repr(s.faust_credentials())


# --- click flags -----------------------------------------------------------------------------


@click.command()
@kafka_options
def show(kafka: KafkaSettings) -> None:
    click.echo(f"{kafka.describe()} hostname={kafka.check_hostname}")


def test_kafka_options_flags_and_env() -> None:
    runner = CliRunner()
    env = {
        "RISKMON_BROKER": "env:1",
        "RISKMON_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "RISKMON_SASL_USERNAME": "env-user",
        "RISKMON_SASL_PASSWORD": SECRET,
    }
    r = runner.invoke(show, [], env=env)
    assert r.exit_code == 0, r.output
    assert r.output.strip() == "env:1 (SASL_PLAINTEXT PLAIN as env-user) hostname=True"
    r = runner.invoke(
        show,
        ["--broker", "flag:2", "--sasl-mechanism", "scram-sha-256", "--no-ssl-check-hostname"],
        env=env,
    )
    assert r.exit_code == 0, r.output
    assert r.output.strip() == "flag:2 (SASL_PLAINTEXT SCRAM-SHA-256 as env-user) hostname=False"
    assert SECRET not in r.output


def test_kafka_options_bad_combination_is_input_error() -> None:
    r = CliRunner().invoke(show, ["--sasl-username", "u"], env={"RISKMON_BROKER": "h:1"})
    assert isinstance(r.exception, InputError)
    assert "SASL_PLAINTEXT or SASL_SSL" in str(r.exception)


def test_kafka_options_help_lists_env_names() -> None:
    r = CliRunner().invoke(show, ["--help"], env={"RISKMON_SECURITY_PROTOCOL": "bogus"})
    assert r.exit_code == 0
    for name in ("RISKMON_BROKER", "RISKMON_SASL_PASSWORD", "RISKMON_SSL_KEYFILE"):
        assert name in r.output
