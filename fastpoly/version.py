"""The package version (one place; read by the build backend and by every result's metadata)."""

__version__ = "0.1.0"
