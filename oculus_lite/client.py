"""The token client under the official SDK's module name (``oculus_sdk.client``)."""

from .tokens._client import Client, OculusClient

__all__ = ["Client", "OculusClient"]
