"""The synchronous client: ``load_file`` / ``request_file`` shaped like kachery-cloud's."""

from .load import RequestResult, load_file, request_file, stream_file
from .many import Outcome, load_files
from .progress import NullProgress, Progress, RichProgress
from .settings import ClientSettings

__all__ = [
    "ClientSettings",
    "NullProgress",
    "Outcome",
    "Progress",
    "RequestResult",
    "RichProgress",
    "load_file",
    "load_files",
    "request_file",
    "stream_file",
]
