"""Training: the engine, its preparation, the run loop and the LR range test."""
