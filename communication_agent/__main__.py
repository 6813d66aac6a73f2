"""`python -m communication_agent` is the same as `commagent`."""

from communication_agent.cli.main import app

app(prog_name="commagent")
