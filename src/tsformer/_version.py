"""The package version, in a leaf module so any layer can read it."""

__version__ = "0.3.0"
