"""The command line and Hydra glue: ``python -m ablate``, a sweep's job directories, its checks and end-of-sweep
report, and ``python -m ablate.status`` to watch it."""
