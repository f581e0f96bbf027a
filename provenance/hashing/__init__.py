"""provenance/hashing."""
