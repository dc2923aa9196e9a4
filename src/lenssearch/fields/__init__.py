"""Cluster fields to inject lenses into: synthetic HST/ACS fields, LensTool-model fields and user fields.

Every kind writes the same directory layout ``data/fields/<name>/`` (see ``docs/architecture.md``) and is read back
with :func:`lenssearch.fields.layout.read_field`.
"""
