"""dispatch: merge one letter with a list of recipients, render a PDF for each, send or print them."""

__version__ = "0.1.0"
