"""The version, on the ground floor: modules that record it (caches, indexes, reports, run
folders) import it from here, not from the package's face, which reaches the models."""

__version__ = "0.1.0"
