"""Live traffic: capture readers, monitor, review queue, promote."""
