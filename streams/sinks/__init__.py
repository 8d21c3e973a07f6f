"""affectstream."""
