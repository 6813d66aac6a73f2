"""Pydantic schemas: the API contract, kept apart from the storage entities."""
