"""`tierflow calibrate`: calibrated escalation learnt from eval runs."""
