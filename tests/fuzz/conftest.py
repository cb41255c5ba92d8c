"""The in-process proxy fixture of the proxy tests, for the fuzz tests of its messages."""

from ..proxy.conftest import make_proxy  # noqa: F401
