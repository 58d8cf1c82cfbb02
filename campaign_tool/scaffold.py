"""``campaign init`` and ``campaign schema``: a new campaign folder, and the config's schema.

The starter folder passes ``campaign lint`` and ``campaign send --dry-run`` as
written, so a new user begins from something that works and changes it a piece
at a time. Nothing that exists is ever overwritten.
"""

from __future__ import annotations

import json
import re
from importlib.resources import files
from pathlib import Path
from typing import Any

from campaign_tool.config import CampaignConfig
from campaign_tool.errors import ConfigError

# Starter file -> where it goes in the new folder.
_STARTER_FILES = {
    "campaign.toml": "campaign.toml",
    "templates/message.html.j2": "templates/message.html.j2",
    "templates/message.txt.j2": "templates/message.txt.j2",
    "recipients.csv": "recipients.csv",
    "suppressed.txt": "suppressed.txt",
    "gitignore": ".gitignore",
}


def default_campaign_id(directory: Path) -> str:
    """A campaign id made from the folder's name (letters, digits, . _ -)."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", directory.resolve().name).strip("-._")
    return (slug or "campaign")[:64]


def init_campaign(directory: Path, campaign_id: str | None = None) -> list[Path]:
    """Write a starter campaign into ``directory``; returns the files written.

    Raises :class:`ConfigError` (and writes nothing) if any of them exists.
    """
    campaign_id = campaign_id or default_campaign_id(directory)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", campaign_id):
        raise ConfigError(f"--id {campaign_id!r}: use 1-64 letters, digits, '.', '_' or '-', "
                          "starting with a letter or digit")
    targets = {source: directory / target for source, target in _STARTER_FILES.items()}
    existing = [str(path) for path in targets.values() if path.exists()]
    if existing:
        raise ConfigError("refusing to overwrite existing files: " + ", ".join(existing)
                          + "; nothing was written")
    starter = files("campaign_tool") / "starter"
    written = []
    for source, target in targets.items():
        text = (starter / source).read_text(encoding="utf-8")
        if source == "campaign.toml":
            text = text.format(campaign_id=campaign_id)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        written.append(target)
    return written


def config_schema() -> dict[str, Any]:
    """The JSON Schema of campaign.toml, from the pydantic models that validate it."""
    schema = CampaignConfig.model_json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            **schema, "title": "campaign_tool campaign file (campaign.toml)"}


def config_schema_json() -> str:
    """The schema as indented JSON text."""
    return json.dumps(config_schema(), indent=2)
