"""Tests of the Slicer module (run with plain pytest). A package, so that its conftest is imported as
``Python.conftest`` and never replaces the engine tests' top-level ``conftest`` module."""
