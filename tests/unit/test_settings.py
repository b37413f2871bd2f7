"""The worker's settings are defined once: every WorkerConfig field is a flag with its env var."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import click
from click.testing import CliRunner

from streams.kafka.settings import WorkerConfig, env_name, worker_options


def _capture() -> tuple[click.Command, list[WorkerConfig]]:
    got: list[WorkerConfig] = []

    @click.command()
    @worker_options
    def cmd(config: WorkerConfig) -> None:
        got.append(config)

    return cmd, got


def test_every_field_is_a_flag_with_its_env_var_and_help() -> None:
    """``riskmon worker --help`` lists one flag per field, with the field's env variable."""
    cmd, _ = _capture()
    text = CliRunner().invoke(cmd, ["--help"], terminal_width=200).output
    for f in fields(WorkerConfig):
        flag = "--" + f.name.replace("_", "-")
        assert flag in text, flag
        assert env_name(f.name) in text, env_name(f.name)
        assert f.metadata["help"].split()[0] in text


def test_no_flags_give_the_dataclass_defaults() -> None:
    cmd, got = _capture()
    result = CliRunner().invoke(cmd, [], env={env_name(f.name): None for f in fields(WorkerConfig)})
    assert result.exit_code == 0, result.output
    assert got == [WorkerConfig()]


def test_environment_then_flags() -> None:
    """A ``RISKMON_*`` variable sets its field; a flag overrides it; paths become Paths."""
    cmd, got = _capture()
    env = {"RISKMON_WEB_PORT": "7001", "RISKMON_LATENESS_DAYS": "3.5", "RISKMON_DATA_DIR": "/x"}
    runner = CliRunner()
    assert runner.invoke(cmd, [], env=env).exit_code == 0
    flags = ["--web-port", "7002", "--cache-customers", "9"]
    assert runner.invoke(cmd, flags, env=env).exit_code == 0
    first, second = got
    assert (first.web_port, first.lateness_days, first.data_dir) == (7001, 3.5, Path("/x"))
    assert (second.web_port, second.cache_customers) == (7002, 9)


def test_bad_values_are_refused_with_a_clear_error() -> None:
    cmd, got = _capture()
    result = CliRunner().invoke(cmd, ["--store", "redis://"])
    assert result.exit_code != 0 and "store must start with" in str(result.exception)
    result = CliRunner().invoke(cmd, ["--partitions", "0"])
    assert result.exit_code == 2 and "--partitions" in result.output
    assert not got
