"""Compression recipes with tfmot (placeholder while the package is assembled)."""
