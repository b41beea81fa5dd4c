"""Registry: partners, their types, tiers, status and certifications."""
