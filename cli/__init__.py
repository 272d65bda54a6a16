"""The `dolphin` command: one thin subcommand module per area, each a few lines over a library call."""
