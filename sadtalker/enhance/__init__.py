"""Enhance stage: GFPGAN v1.4 face restoration of the rendered frames."""
