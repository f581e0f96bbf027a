"""provenance/log."""
