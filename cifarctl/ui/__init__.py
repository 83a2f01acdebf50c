"""Terminal renderers shared by the commands (rich renderables, no torch)."""
