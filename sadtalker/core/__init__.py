"""The bottom layer: constants, errors, the typed stage contract, precision regions and job bookkeeping."""
