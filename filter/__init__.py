"""capnet filter package (built in a later issue)."""
