"""64-byte trading-signal codec (layout v1) with MoldUDP64 and SoupBinTCP framing (Rust)."""

from collections.abc import Sequence
from typing import Any, Final, Literal, TypeAlias, final

import numpy as np
import numpy.typing as npt
from typing_extensions import Buffer

__all__ = [
    "ACTION_BUY",
    "ACTION_HOLD",
    "ACTION_SELL",
    "FLAGS_DEFINED",
    "FLAG_CANARY",
    "FLAG_COALESCED",
    "FLAG_CONTEXT_STALE",
    "FLAG_FALLBACK",
    "FLAG_HALTED",
    "GIL_RELEASE_MIN_SIGNALS",
    "LAYOUT_VERSION",
    "MAGIC",
    "MOLDUDP64_DEFAULT_MAX_DATAGRAM",
    "MOLDUDP64_END_OF_SESSION",
    "MOLDUDP64_HEADER_SIZE",
    "MOLDUDP64_MAX_DATAGRAM",
    "MOLDUDP64_MAX_MESSAGE_COUNT",
    "SIGNAL_RECORD_DTYPE",
    "SIGNAL_SIZE",
    "SIGNAL_WIRE_DTYPE",
    "SOUPBINTCP_SIGNAL_PACKET_SIZE",
    "FramingError",
    "MoldUDP64Encoder",
    "MoldUDP64Packet",
    "SignalFormatError",
    "SoupBinTCPDecoder",
    "SoupBinTCPPacket",
    "__version__",
    "build_profile",
    "crc32c",
    "moldudp64_decode",
    "moldudp64_request",
    "pack",
    "pack_into",
    "pack_signal",
    "soupbintcp_decode",
    "soupbintcp_encode_signals",
    "unpack",
    "unpack_into",
    "validate",
]

#: Anything exporting the buffer protocol, numpy arrays included.
_BufferLike: TypeAlias = Buffer | npt.NDArray[Any]

__version__: Final[str]
#: "release" or "debug": benchmarks refuse debug builds.
build_profile: Final[str]

SIGNAL_SIZE: Final[int]
MAGIC: Final[int]
LAYOUT_VERSION: Final[int]
ACTION_HOLD: Final[int]
ACTION_BUY: Final[int]
ACTION_SELL: Final[int]
FLAG_CANARY: Final[int]
FLAG_CONTEXT_STALE: Final[int]
FLAG_FALLBACK: Final[int]
FLAG_COALESCED: Final[int]
FLAG_HALTED: Final[int]
#: Bits 0-4; the others are reserved (refused when packing, ignored when reading).
FLAGS_DEFINED: Final[int]
#: Batches of at least this many signals run with the GIL released.
GIL_RELEASE_MIN_SIGNALS: Final[int]

#: One signal's fields, native byte order, C layout (itemsize 64, same offsets as the wire
#: except ``action``): the array type ``pack_into`` reads and ``unpack`` returns.
SIGNAL_RECORD_DTYPE: Final[np.dtype[np.void]]
#: The 64 wire bytes as big-endian fields (incl. magic, layout_version, crc32c), for zero-copy
#: ``np.frombuffer(buf, SIGNAL_WIRE_DTYPE)`` over packed (and validated) buffers.
SIGNAL_WIRE_DTYPE: Final[np.dtype[np.void]]

MOLDUDP64_HEADER_SIZE: Final[int]
MOLDUDP64_END_OF_SESSION: Final[int]
MOLDUDP64_MAX_MESSAGE_COUNT: Final[int]
MOLDUDP64_DEFAULT_MAX_DATAGRAM: Final[int]
MOLDUDP64_MAX_DATAGRAM: Final[int]
SOUPBINTCP_SIGNAL_PACKET_SIZE: Final[int]

class SignalFormatError(ValueError):
    """A signal buffer failed validation; ``offset`` is the byte offset of the bad signal."""

    offset: int
    def __init__(self, message: str, offset: int) -> None: ...
    def __reduce__(self) -> tuple[type[SignalFormatError], tuple[str, int]]: ...

class FramingError(ValueError):
    """A MoldUDP64 / SoupBinTCP packet is malformed or cannot be encoded.

    ``offset`` is the byte offset in the packet (in the stream for ``SoupBinTCPDecoder``).
    """

    offset: int
    def __init__(self, message: str, offset: int) -> None: ...
    def __reduce__(self) -> tuple[type[FramingError], tuple[str, int]]: ...

def crc32c(data: _BufferLike, value: int = 0) -> int:
    """CRC-32C (Castagnoli) of ``data``, continuing from ``value`` (0 to start)."""

def pack_signal(
    action: int,
    symbol_id: int,
    sequence: int,
    event_ts_ns: int,
    emit_ts_ns: int,
    confidence: float,
    price_target: float,
    stop_loss: float,
    position_size: float,
    risk_score: int = 0,
    urgency: int = 0,
    strategy_id: int = 0,
    model_version: int = 0,
    flags: int = 0,
    context_version: int = 0,
) -> bytes:
    """Pack one signal into its 64 wire bytes.

    Raises ``OverflowError`` for an integer out of its field's range and ``SignalFormatError``
    for an action other than 0/1/2 or a reserved flag bit.
    """

def pack_into(records: npt.NDArray[np.void], out: _BufferLike, offset: int = 0) -> int:
    """Pack every record of ``records`` (``SIGNAL_RECORD_DTYPE``) into ``out[offset:]``.

    ``out`` is any writable C-contiguous buffer (bytearray, numpy uint8 array, memoryview), reused
    across calls. Returns the bytes written (``64 * len(records)``). Raises ``ValueError`` when
    ``out`` is too small or shares memory with ``records`` (nothing written), ``TypeError`` for a
    wrong dtype or a read-only ``out``, ``SignalFormatError`` for a bad action or reserved flag bit
    (``offset`` = the record's byte offset in ``records``; ``out`` may then be partly written).
    Releases the GIL for batches of ``GIL_RELEASE_MIN_SIGNALS`` or more.
    """

def pack(records: npt.NDArray[np.void]) -> bytes:
    """Like ``pack_into`` into new ``bytes``."""

def validate(buf: _BufferLike) -> int:
    """Validate every signal in ``buf`` (length, magic, version, CRC, action); return the count."""

def unpack(buf: _BufferLike) -> npt.NDArray[np.void]:
    """Validate ``buf`` and decode it into a new ``SIGNAL_RECORD_DTYPE`` array.

    Raises ``SignalFormatError`` naming the byte offset of the first bad signal (or of the
    trailing partial signal when the length is not a multiple of 64).
    """

def unpack_into(buf: _BufferLike, records: npt.NDArray[np.void]) -> int:
    """Validate ``buf`` and decode it into ``records[:n]`` (preallocated); return ``n``."""

@final
class MoldUDP64Encoder:
    """MoldUDP64 sender: numbers messages from ``next_sequence``, fills packets to ``max_datagram``.

    ``max_datagram`` is the UDP payload cap (default 1472 = 1500-byte MTU - IPv4 - UDP headers,
    which holds 22 signals); 1420 gives Nassau's 1400-byte block area (21 signals).
    """

    def __new__(
        cls, session: str, *, next_sequence: int = 1, max_datagram: int = 1472
    ) -> MoldUDP64Encoder: ...
    @property
    def session(self) -> str: ...
    @property
    def next_sequence(self) -> int: ...
    @next_sequence.setter
    def next_sequence(self, value: int) -> None: ...
    @property
    def max_datagram(self) -> int: ...
    @property
    def signals_per_packet(self) -> int: ...
    def framed_size(self, n_signals: int) -> int:
        """Bytes ``encode_signals`` needs for ``n_signals`` signals."""

    def encode_signals(
        self, signals: _BufferLike, out: _BufferLike, offset: int = 0
    ) -> list[tuple[int, int]]:
        """Frame packed signals into ``out[offset:]``; return ``(offset, length)`` per packet.

        Signal ``i`` must carry sequence ``next_sequence + i`` (else ``FramingError`` naming its
        byte offset); ``next_sequence`` advances by the number of signals.
        """

    def encode_messages(self, messages: Sequence[bytes]) -> list[bytes]:
        """Number arbitrary messages from ``next_sequence`` and pack them into few packets."""

    def heartbeat(self) -> bytes:
        """Heartbeat (count 0) announcing ``next_sequence``."""

    def end_of_session(self) -> bytes:
        """End of session (count 0xFFFF) announcing ``next_sequence``."""

@final
class MoldUDP64Packet:
    """A decoded MoldUDP64 datagram."""

    @property
    def kind(self) -> Literal["data", "heartbeat", "end_of_session", "request"]: ...
    @property
    def session(self) -> str: ...
    @property
    def sequence(self) -> int: ...
    @property
    def count(self) -> int: ...
    @property
    def messages(self) -> list[bytes]: ...
    @property
    def message_offsets(self) -> list[int]: ...
    def signals(self) -> npt.NDArray[np.void]:
        """Decode and validate every message as a 64-byte signal.

        Errors name the byte offset in the datagram.
        """

    def __len__(self) -> int: ...

def moldudp64_decode(packet: _BufferLike) -> MoldUDP64Packet:
    """Decode one datagram: downstream packet, heartbeat, end of session or 20-byte request."""

def moldudp64_request(session: str, sequence: int, count: int) -> bytes:
    """The 20-byte retransmission request for ``count`` (1..65534) messages from ``sequence``."""

@final
class SoupBinTCPPacket:
    """One SoupBinTCP 3.00 logical packet; build with the static constructors, send ``encode()``.

    Equality compares content; ``offset`` and the implicit sequence of an ``S`` packet (where it
    was seen in a stream) are not part of it.
    """

    @staticmethod
    def debug(text: str) -> SoupBinTCPPacket: ...
    @staticmethod
    def login_accepted(session: str, sequence: int) -> SoupBinTCPPacket: ...
    @staticmethod
    def login_rejected(reason: str) -> SoupBinTCPPacket: ...
    @staticmethod
    def sequenced_data(payload: _BufferLike) -> SoupBinTCPPacket: ...
    @staticmethod
    def unsequenced_data(payload: _BufferLike) -> SoupBinTCPPacket: ...
    @staticmethod
    def login_request(
        username: str, password: str, session: str = "", sequence: int = 0
    ) -> SoupBinTCPPacket: ...
    @staticmethod
    def server_heartbeat() -> SoupBinTCPPacket: ...
    @staticmethod
    def end_of_session() -> SoupBinTCPPacket: ...
    @staticmethod
    def client_heartbeat() -> SoupBinTCPPacket: ...
    @staticmethod
    def logout_request() -> SoupBinTCPPacket: ...
    def encode(self) -> bytes: ...
    @property
    def packet_type(self) -> str: ...
    @property
    def payload(self) -> bytes: ...
    @property
    def session(self) -> str | None: ...
    @property
    def sequence(self) -> int | None: ...
    @property
    def username(self) -> str | None: ...
    @property
    def password(self) -> str | None: ...
    @property
    def reject_reason(self) -> str | None: ...
    @property
    def offset(self) -> int: ...
    def __eq__(self, other: object, /) -> bool: ...
    __hash__: Any

def soupbintcp_decode(packet: _BufferLike) -> SoupBinTCPPacket:
    """Decode exactly one complete packet (length prefix included)."""

def soupbintcp_encode_signals(signals: _BufferLike, out: _BufferLike, offset: int = 0) -> int:
    """Write one ``S`` packet (67 bytes) per 64-byte signal into ``out[offset:]``; return bytes."""

@final
class SoupBinTCPDecoder:
    """Streaming decoder: feed TCP bytes in any chunking, get whole packets back.

    Tracks sequence numbers (``S`` packets after an ``A`` get ``sequence``). A framing error is
    sticky: every later ``feed`` raises the same ``FramingError`` (close the connection); packets
    decoded in the same call before the error are on the exception's ``packets`` attribute.
    """

    def __new__(cls) -> SoupBinTCPDecoder: ...
    def feed(self, data: _BufferLike) -> list[SoupBinTCPPacket]: ...
    @property
    def pending(self) -> int: ...
    @property
    def position(self) -> int: ...
    @property
    def next_sequence(self) -> int | None: ...
    @next_sequence.setter
    def next_sequence(self, value: int | None) -> None: ...
