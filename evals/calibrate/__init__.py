"""Internal: `tierflow calibrate`, calibrated escalation learnt from eval runs (modules `command`, `fit`, `choose`, `report`, `table`)."""

__all__: list[str] = []
