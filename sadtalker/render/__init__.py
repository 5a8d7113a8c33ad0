"""Render stage: the face renderer's networks (one module each) and coefficients -> frames."""
