"""Arguments the sweep tests share."""

# A local CPU sweep's plan times a few training steps of each distinct model as it starts (seconds each); tests
# that do not look at the plan's projected times skip that (test_sweep's pool-size sweep keeps it).
NO_PLAN_TIMES = "hydra.callbacks.plan.measure=false"
