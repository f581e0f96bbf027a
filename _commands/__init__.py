"""_commands."""
