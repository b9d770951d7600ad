"""sigmw: signaling middleware over SCTP."""

__version__ = "0.2.0"
