"""provenance/recording."""
