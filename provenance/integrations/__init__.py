"""provenance/integrations."""
