"""Imports every sub-command module so that each registers itself on the shared Typer app."""

# One line per command module (each agent/owner adds its own):
