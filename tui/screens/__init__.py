"""Screens: loading, the main tabbed screen, help, prompts."""
