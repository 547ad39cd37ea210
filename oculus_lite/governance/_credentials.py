"""Integration credentials as read-only mappings that never show a value.

``Credentials`` maps an integration ("stripe") to an ``IntegrationCredentials``, which maps a
credential type ("api_key") to its value. Neither can be changed in place, and neither
``repr``/``str`` shows a value (only integration and type names). A missing integration or
type raises ``CredentialError`` from ``[]`` and from ``get(name)``; ``get(name, default)``
with an explicit default returns the default, as a caller who asks for it expects.
"""

from typing import Dict, Iterator, Mapping, Optional, TypeVar, Union, overload

from ..exceptions import CredentialError

__all__ = ["EMPTY_CREDENTIALS", "Credentials", "IntegrationCredentials"]

_D = TypeVar("_D")
_MISSING = object()


class IntegrationCredentials(Mapping[str, str]):
    """The credentials of one integration: credential type -> value. Values never print."""

    __slots__ = ("_integration", "_values")

    def __init__(self, integration: str, values: Mapping[str, str]) -> None:
        self._integration = integration
        self._values: Dict[str, str] = dict(values)

    @property
    def integration(self) -> str:
        return self._integration

    def __getitem__(self, credential_type: str) -> str:
        try:
            return self._values[credential_type]
        except (KeyError, TypeError):
            raise CredentialError(self._integration, credential_type=str(credential_type)) from None

    @overload
    def get(self, credential_type: str) -> str: ...

    @overload
    def get(self, credential_type: str, default: Union[str, _D]) -> Union[str, _D]: ...

    def get(self, credential_type: str, default: object = _MISSING) -> object:
        """The value; ``CredentialError`` when missing, unless a default is given."""
        value = self._values.get(credential_type, _MISSING) if isinstance(credential_type, str) else _MISSING
        if value is not _MISSING:
            return value
        if default is _MISSING:
            raise CredentialError(self._integration, credential_type=str(credential_type))
        return default

    def __contains__(self, credential_type: object) -> bool:
        return credential_type in self._values

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return "IntegrationCredentials({!r}, types={!r})".format(self._integration, sorted(self._values))

    __str__ = __repr__

    def __reduce__(self) -> str:
        raise TypeError("credentials cannot be pickled (they would leave the process in clear)")


class Credentials(Mapping[str, IntegrationCredentials]):
    """Every integration's credentials: ``creds["stripe"]["api_key"]``. Read-only; values never
    print; a missing integration raises ``CredentialError``."""

    __slots__ = ("_integrations",)

    def __init__(self, integrations: Optional[Mapping[str, Mapping[str, str]]] = None) -> None:
        self._integrations: Dict[str, IntegrationCredentials] = {}
        for name, values in (integrations or {}).items():
            self._integrations[name] = (
                values if isinstance(values, IntegrationCredentials) else IntegrationCredentials(name, values)
            )

    def __getitem__(self, integration: str) -> IntegrationCredentials:
        try:
            return self._integrations[integration]
        except (KeyError, TypeError):
            raise CredentialError(str(integration)) from None

    @overload
    def get(self, integration: str) -> IntegrationCredentials: ...

    @overload
    def get(
        self, integration: str, default: Union[IntegrationCredentials, _D]
    ) -> Union[IntegrationCredentials, _D]: ...

    def get(self, integration: str, default: object = _MISSING) -> object:
        """The integration's credentials; ``CredentialError`` when missing, unless a default is given."""
        found = self._integrations.get(integration, None) if isinstance(integration, str) else None
        if found is not None:
            return found
        if default is _MISSING:
            raise CredentialError(str(integration))
        return default

    def __contains__(self, integration: object) -> bool:
        return integration in self._integrations

    def __iter__(self) -> Iterator[str]:
        return iter(self._integrations)

    def __len__(self) -> int:
        return len(self._integrations)

    def with_value(self, integration: str, credential_type: str, value: str) -> "Credentials":
        """A copy with one credential set (added or rotated)."""
        values: Dict[str, Mapping[str, str]] = dict(self._integrations)
        current = dict(self._integrations[integration]._values) if integration in self._integrations else {}
        current[credential_type] = value
        values[integration] = IntegrationCredentials(integration, current)
        return Credentials(values)

    def secrets(self) -> Iterator[str]:
        """Every value, for redaction (the audit emitter and logs must never show them)."""
        for integration in self._integrations.values():
            yield from integration._values.values()

    def __repr__(self) -> str:
        return "Credentials({})".format(
            ", ".join(
                "{}: {}".format(name, sorted(self._integrations[name])) for name in sorted(self._integrations)
            )
        )

    __str__ = __repr__

    def __reduce__(self) -> str:
        raise TypeError("credentials cannot be pickled (they would leave the process in clear)")


EMPTY_CREDENTIALS = Credentials()
