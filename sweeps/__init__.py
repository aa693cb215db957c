"""Sweep specs (``sweeps/*.yaml``) and the Ray Tune launcher behind ``bench sweep``.

``sweeps.spec`` parses a spec into trial configs, ``sweeps.launcher`` runs them on a local Ray
instance or a cluster, ``sweeps.trainable`` is the function every Ray trial runs.
"""
