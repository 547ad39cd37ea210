"""The command line's exit codes, one table for every command."""

from ..exceptions import (
    ConfigurationError,
    DelegationError,
    NetworkError,
    OculusAuthError,
    OculusError,
    ValidationError,
)

__all__ = [
    "EXIT_AUTH",
    "EXIT_INVALID",
    "EXIT_NETWORK",
    "EXIT_OK",
    "EXIT_OTHER",
    "EXIT_USAGE",
    "exit_code_for",
]

EXIT_OK, EXIT_OTHER, EXIT_USAGE, EXIT_AUTH, EXIT_NETWORK, EXIT_INVALID = 0, 1, 2, 3, 4, 5


def exit_code_for(exc: OculusError) -> int:
    """The documented exit code for an error: 3 auth, 4 network, 2 refused before sending, else 1."""
    if isinstance(exc, (OculusAuthError, DelegationError)):  # refused: authorisation
        return EXIT_AUTH
    if isinstance(exc, NetworkError):
        return EXIT_NETWORK
    if isinstance(exc, (ConfigurationError, ValidationError)) and exc.status_code is None:
        return EXIT_USAGE
    return EXIT_OTHER
