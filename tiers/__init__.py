"""Tiers files and calibration artifacts shipped with tierflow (package data, no code).

Name one without a path: ``tierflow --tiers replay_gsm8k_calibrated ...`` or
``TIERFLOW_TIERS=three_tier``; `tierflow.model_tiers.config.shipped_tiers_files` lists them.
"""

__all__: list[str] = []
