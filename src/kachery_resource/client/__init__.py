"""The synchronous client: ``load_file`` / ``request_file`` shaped like kachery-cloud's."""

from .load import RequestResult, load_file, request_file, stream_file
from .progress import NullProgress, Progress, RichProgress
from .settings import ClientSettings

__all__ = [
    "ClientSettings",
    "NullProgress",
    "Progress",
    "RequestResult",
    "RichProgress",
    "load_file",
    "request_file",
    "stream_file",
]
