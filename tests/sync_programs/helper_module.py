"""Imported by show_context.py: proves that sys.path[0] is the script's directory."""

NAME = "helper_module"
