"""The command line: parse options, call one function of the pipeline (dispatch.campaign), print what happened.

app.py holds the application and its error handling; each other module holds a group of commands.
"""

from dispatch.cli import account, journal, letters, records, send, track  # noqa: F401  (each registers its commands)
from dispatch.cli.app import app, run

__all__ = ["app", "run"]
