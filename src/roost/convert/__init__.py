"""Conversions and deployment: foreign checkpoints in (``pe_spatial``), exports and int8 out."""
