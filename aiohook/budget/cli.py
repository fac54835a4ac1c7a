"""CLI verbs of the budget feature; each registers itself with aiohook.cli.verb."""
