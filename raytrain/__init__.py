"""raytrain: Multi-VAE / RecVAE with Personalized Item Alignment, prepared, trained, swept and scored on Ray."""

__version__ = "0.1.0"
