"""Phone-line AI agent appliance."""
__version__ = "0.1.0"
