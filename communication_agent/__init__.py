"""Communication Agent: support email from ingestion to an approved, sent reply."""

__version__ = "0.1.0"
