"""sigmw: signaling middleware over SCTP."""

__version__ = "0.1.0"
