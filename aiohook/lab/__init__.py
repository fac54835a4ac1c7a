"""Lab helpers that build real storage for tests and calibration (never used by the hook)."""
