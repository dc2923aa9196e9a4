"""Tests of lenssearch.evaluate (a package so that test module names do not clash with other folders)."""
