"""CLI verbs of the hook feature; each registers itself with aiohook.cli.verb."""
