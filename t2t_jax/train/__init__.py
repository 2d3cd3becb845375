"""Training: optimizer and schedule, loss, jitted steps, sharding, checkpoints, and the loop."""
