"""The package version: one place, read by the package, the run files and the CLI."""

__version__ = "0.3.0"
