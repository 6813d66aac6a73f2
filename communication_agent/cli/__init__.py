"""The `commagent` command line."""
