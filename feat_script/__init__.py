"""Feature extraction from raw video for MASN and AVST: one pipeline, one CLI per feature kind."""
