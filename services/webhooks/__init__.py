"""Webhooks service: signed deliveries of the public events to the systems that subscribe."""
