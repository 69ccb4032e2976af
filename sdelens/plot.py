"""Figures (filled in below)."""
