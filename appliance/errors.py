"""The appliance's error hierarchy. Catch ApplianceError at the edges (CLI, supervisor)."""


class ApplianceError(Exception):
    """Base of every error the appliance raises on purpose."""


class ConfigError(ApplianceError):
    """A configuration file is invalid. `problems` lists every problem found, not just the first."""

    def __init__(self, problems: list[str], source: str = "<config>"):
        self.problems = list(problems)
        self.source = source
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{source}: {len(self.problems)} problem(s):\n{lines}")


class LineError(ApplianceError):
    """A line (SIP, modem, GSM, simulated) failed or refused an operation."""


class ModelError(ApplianceError):
    """A speech model is missing, corrupt or cannot be loaded."""


class NotBuiltYet(ApplianceError):
    """A capability that a later milestone delivers."""
