"""A faithful local emulator of PortOne's REST API, with a mock verification window."""

from .app import create_sandbox_app
from .state import Fault, Person, SandboxState, TokenRules, load_persons

__all__ = ["Fault", "Person", "SandboxState", "TokenRules", "create_sandbox_app", "load_persons"]
