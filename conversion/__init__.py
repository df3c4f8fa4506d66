"""Training, quantization and evaluation of the age/gender model (needs the `train` extra)."""
