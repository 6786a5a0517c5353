"""genvault: archive AI-generated media before the providers delete it."""

__version__ = "0.1.0"
