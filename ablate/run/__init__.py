"""One run: the training loop, its checkpoint, record and run directory, tracking, and torchrun set-up."""
