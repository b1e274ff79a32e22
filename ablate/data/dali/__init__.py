"""data.loader=dali: NVIDIA DALI pipelines for class-folder trees (imported only when that loader is asked for)."""
