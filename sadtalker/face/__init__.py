"""Preprocess stage: face photo -> landmarks -> crop -> 3DMM coefficients of the source (ReconNet)."""
