"""Fine-tune an encoder: the Trainer set-up, checkpoints, phase timing, tuning."""
