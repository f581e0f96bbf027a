"""provenance/policy."""
