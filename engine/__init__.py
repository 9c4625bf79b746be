"""What every trainer shares: run directory, seeding, checkpoints and resume, AMP, DDP, progress."""
