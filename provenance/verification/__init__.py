"""provenance/verification."""
