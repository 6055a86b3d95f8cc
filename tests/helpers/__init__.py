"""Shared test helpers: small datasets in real on-disk formats, tiny training runs, model fixtures."""
import os

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures")
