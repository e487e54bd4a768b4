"""What people see: charts, the interactive page and summary, the calibration notebooks and the
model card, rendered from the artifacts the stages wrote."""
