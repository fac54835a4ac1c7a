"""One module per `aiohook` command, listed in aiohook.cli's static table.

Each has `add_arguments(parser)` and `run(args) -> exit status`, and imports
what it needs from the libraries when it runs. Nothing but aiohook.cli imports
a command module.
"""
