"""Plugins used by the tests: tiny, fast methods and deliberately broken ones."""
