"""Training: optimizer and schedule, loss, jitted steps, checkpoints, and the loop (sharding: t2t_jax.sharding)."""
