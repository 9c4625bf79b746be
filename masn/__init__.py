"""MASN (ACL 2021): motion-appearance synergistic networks for video QA."""
