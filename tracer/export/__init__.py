"""Other formats: Chrome/Perfetto JSON and JSON lines out, Chrome JSON in."""
