"""capnet netstack package (built in a later issue)."""
