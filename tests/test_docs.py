"""The README and --help stay honest: every command documented, exit codes listed."""

from __future__ import annotations

import re

import click
import pytest
from click.testing import CliRunner

from campaign_tool.cli import main
from tests.conftest import REPO

README = (REPO / "README.md").read_text(encoding="utf-8")
COMMANDS = sorted(main.commands)  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_has_help_and_a_readme_example(name: str) -> None:
    command = main.commands[name]  # type: ignore[attr-defined]
    assert command.help and "Example:" in command.help
    assert re.search(rf"^    campaign {name} \S", README, re.MULTILINE), name


@pytest.mark.parametrize("name", [None, *COMMANDS])
def test_help_lists_the_exit_codes(name: str | None) -> None:
    args = [name, "--help"] if name else ["--help"]
    output = CliRunner().invoke(main, args).output
    for code in ("0  success", "1  finished", "2  usage", "3  halted"):
        assert code in output


def test_readme_lists_the_exit_codes() -> None:
    for code in range(4):
        assert re.search(rf"^\| {code} \| ", README, re.MULTILINE)


def test_readme_gives_the_two_set_up_commands_and_ci_runs_the_test_one() -> None:
    assert "    pip install -e . && campaign send examples/newsletter/campaign.toml\n" in README
    test_command = "pip install -e '.[test]' && pytest"
    assert f"    {test_command}\n" in README
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert any(line.strip() == test_command for line in ci.splitlines())


def test_every_option_has_help_text() -> None:
    for name in COMMANDS:
        for parameter in main.commands[name].params:  # type: ignore[attr-defined]
            if isinstance(parameter, click.Option):
                assert parameter.help, f"{name} {parameter.name}"
