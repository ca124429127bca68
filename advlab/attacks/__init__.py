"""Attacks: evasion (test-time perturbations) and, later, poisoning."""
