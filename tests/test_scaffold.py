"""``campaign init`` starts a working campaign; ``campaign schema`` describes the file."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Callable
from pathlib import Path

import jsonschema
import pytest
from click.testing import Result

from tests.conftest import REPO, MakeCampaign

Cli = Callable[..., Result]


def test_init_writes_a_campaign_that_lints_and_dry_runs_clean(cli: Cli, tmp_path: Path) -> None:
    folder = tmp_path / "spring-sale"
    result = cli("init", folder)
    assert result.exit_code == 0, result.output
    for name in ("campaign.toml", "templates/message.html.j2", "templates/message.txt.j2",
                 "recipients.csv", "suppressed.txt", ".gitignore"):
        assert (folder / name).is_file(), name
    config = tomllib.loads((folder / "campaign.toml").read_text(encoding="utf-8"))
    assert config["campaign"]["id"] == "spring-sale"
    lint = cli("lint", folder / "campaign.toml")
    assert lint.exit_code == 0, lint.output
    assert "0 errors" in lint.output
    dry = cli("send", folder / "campaign.toml", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "3 messages would be sent" in dry.output


def test_init_refuses_to_overwrite_anything(cli: Cli, tmp_path: Path) -> None:
    folder = tmp_path / "c"
    folder.mkdir()
    (folder / "recipients.csv").write_text("mine\n", encoding="utf-8")
    result = cli("init", folder)
    assert result.exit_code == 2
    assert "refusing to overwrite" in result.output and "recipients.csv" in result.output
    assert (folder / "recipients.csv").read_text(encoding="utf-8") == "mine\n"
    assert not (folder / "campaign.toml").exists()


def test_init_takes_an_explicit_id_and_refuses_a_bad_one(cli: Cli, tmp_path: Path) -> None:
    assert cli("init", tmp_path / "a", "--id", "q4.digest").exit_code == 0
    assert 'id = "q4.digest"' in (tmp_path / "a" / "campaign.toml").read_text()
    assert cli("init", tmp_path / "b", "--id", "no spaces").exit_code == 2


def _schema(cli: Cli) -> dict[str, object]:
    result = cli("schema")
    assert result.exit_code == 0
    document = json.loads(result.output)
    assert isinstance(document, dict)
    return document


@pytest.mark.parametrize("path", [REPO / "examples/newsletter/campaign.toml",
                                  REPO / "campaign_tool/starter/campaign.toml"])
def test_schema_accepts_the_shipped_campaign_files(cli: Cli, path: Path) -> None:
    text = path.read_text(encoding="utf-8").replace("{campaign_id}", "x").replace(
        "{{{{", "{{").replace("}}}}", "}}")
    jsonschema.validate(tomllib.loads(text), _schema(cli))


def test_schema_rejects_what_the_loader_rejects(cli: Cli, make_campaign: MakeCampaign) -> None:
    schema = _schema(cli)
    config = tomllib.loads(make_campaign().config.read_text(encoding="utf-8"))
    jsonschema.validate(config, schema)
    config["campaign"]["cc"] = "boss@sender.test"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(config, schema)


def test_lint_takes_several_files_and_exits_with_the_worst(cli: Cli,
                                                           make_campaign: MakeCampaign) -> None:
    good = make_campaign()
    bad = make_campaign(headers={"Bcc": "x@sender.test"})
    result = cli("lint", good.config, bad.config, "--format", "json")
    assert result.exit_code == 2
    documents = json.loads(result.output)
    assert [d["ok"] for d in documents] == [True, False]


def test_pre_commit_hook_runs_campaign_lint() -> None:
    hooks = (REPO / ".pre-commit-hooks.yaml").read_text(encoding="utf-8")
    assert "id: campaign-lint" in hooks and "entry: campaign lint" in hooks
    assert "language: python" in hooks
