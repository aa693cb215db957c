"""Baselines: reference recommenders (pop, random) and RecBole's sequential models."""
