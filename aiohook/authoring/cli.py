"""CLI verbs of the authoring feature; each registers itself with aiohook.cli.verb."""
