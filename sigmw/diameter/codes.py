"""Diameter numbers sigmw uses (RFC 6733): command codes, AVP codes, flags, Result-Codes."""

from __future__ import annotations

from enum import IntEnum

HEADER_LEN = 20
DIAMETER_PPID = 46
"""SCTP payload protocol id of Diameter (RFC 6733 2.1): on every message sigmw sends."""
ACCEPTED_PPIDS = frozenset((46, 0))
"""freeDiameter sends PPID 0: accepted from peers, never sent."""
SHED_BACKLOG = 512
"""Messages waiting on one endpoint beyond which new requests get 3004 (relay.too_busy):
a few milliseconds of work, well inside any client's timeout."""
TICK_S = 0.1
"""Resolution of the Diameter timers (Tw, Tx, CER/CEA/DPA waits): all are seconds long."""
AVP_HEADER_LEN = 8
VENDOR_AVP_HEADER_LEN = 12
RELAY_APPLICATION = 0xFFFFFFFF
"""Application id of a relay agent (RFC 6733 2.4): advertises every application."""
COMMON_MESSAGES = 0
"""Application id of base-protocol messages (CER, DWR, DPR)."""

# Command flags (RFC 6733 3).
FLAG_REQUEST = 0x80
FLAG_PROXIABLE = 0x40
FLAG_ERROR = 0x20
FLAG_RETRANSMIT = 0x10
FLAGS_RESERVED = 0x0F

# AVP flags (RFC 6733 4.1).
AVP_VENDOR = 0x80
AVP_MANDATORY = 0x40
AVP_PROTECTED = 0x20
AVP_FLAGS_RESERVED = 0x1F


class Command(IntEnum):
    CAPABILITIES_EXCHANGE = 257
    DEVICE_WATCHDOG = 280
    DISCONNECT_PEER = 282


MANAGEMENT_COMMANDS = frozenset(int(c) for c in Command)
"""Peer-to-peer commands: never relayed, always on stream 0."""


class Avp(IntEnum):
    ACCT_APPLICATION_ID = 259
    AUTH_APPLICATION_ID = 258
    DESTINATION_HOST = 293
    DESTINATION_REALM = 283
    DISCONNECT_CAUSE = 273
    ERROR_MESSAGE = 281
    ERROR_REPORTING_HOST = 294
    FAILED_AVP = 279
    FIRMWARE_REVISION = 267
    HOST_IP_ADDRESS = 257
    ORIGIN_HOST = 264
    ORIGIN_REALM = 296
    ORIGIN_STATE_ID = 278
    PRODUCT_NAME = 269
    PROXY_INFO = 284
    REDIRECT_HOST = 292
    REDIRECT_HOST_USAGE = 261
    RESULT_CODE = 268
    ROUTE_RECORD = 282
    SESSION_ID = 263
    SUPPORTED_VENDOR_ID = 265
    VENDOR_ID = 266
    VENDOR_SPECIFIC_APPLICATION_ID = 260
    EXPERIMENTAL_RESULT = 297


class ResultCode(IntEnum):
    SUCCESS = 2001
    UNABLE_TO_DELIVER = 3002
    REALM_NOT_SERVED = 3003
    TOO_BUSY = 3004
    LOOP_DETECTED = 3005
    REDIRECT_INDICATION = 3006
    APPLICATION_UNSUPPORTED = 3007
    INVALID_HDR_BITS = 3008
    INVALID_AVP_BITS = 3009
    UNKNOWN_PEER = 3010
    AVP_UNSUPPORTED = 5001
    UNKNOWN_SESSION_ID = 5002
    INVALID_AVP_VALUE = 5004
    MISSING_AVP = 5005
    NO_COMMON_APPLICATION = 5010
    UNSUPPORTED_VERSION = 5011
    UNABLE_TO_COMPLY = 5012
    INVALID_BIT_IN_HEADER = 5013
    INVALID_AVP_LENGTH = 5014
    INVALID_MESSAGE_LENGTH = 5015
    INVALID_AVP_BIT_COMBO = 5016


PROTOCOL_ERRORS = range(3000, 4000)
"""3xxx answers carry the E bit (RFC 6733 7.1.3)."""


class DisconnectCause(IntEnum):
    REBOOTING = 0
    BUSY = 1
    DO_NOT_WANT_TO_TALK_TO_YOU = 2
