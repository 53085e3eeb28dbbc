"""The tiny world: scenes, their renderer, prompt sets, and the analytic detector."""
