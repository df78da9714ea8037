"""Signal outputs: MoldUDP64 over UDP, SoupBinTCP over TCP, and the consumer that reads both.

Publishers take packed 64-byte signals in batches (one call per batch) and run on the caller's
event loop. See ``docs/consumers.md`` for the wire formats and gap recovery.
"""

from relentless_fast.outputs.policy import EmissionFilter, EmissionPolicy
from relentless_fast.outputs.tcp import TcpCounters, TcpPublisher, TcpPublisherConfig
from relentless_fast.outputs.udp import UdpCounters, UdpPublisher, UdpPublisherConfig
from relentless_fast.outputs.window import SignalWindow

__all__ = [
    "EmissionFilter",
    "EmissionPolicy",
    "SignalWindow",
    "TcpCounters",
    "TcpPublisher",
    "TcpPublisherConfig",
    "UdpCounters",
    "UdpPublisher",
    "UdpPublisherConfig",
]
