"""Data sets: loaders for the public layouts and deterministic synthetic stand-ins."""
