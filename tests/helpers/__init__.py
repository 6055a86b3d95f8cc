"""Shared test helpers: small datasets in real on-disk formats, tiny training runs, model fixtures."""
