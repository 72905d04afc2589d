"""``cnnlab serve``: a local web page that shows inside your own trained CNNs."""

from .app import create_app

__all__ = ["create_app"]
