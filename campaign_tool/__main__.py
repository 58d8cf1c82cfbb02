"""``python -m campaign_tool`` is the ``campaign`` command."""

from campaign_tool.cli import main

main()
