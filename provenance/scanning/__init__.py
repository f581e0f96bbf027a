"""provenance/scanning."""
