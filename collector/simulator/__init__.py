"""The simulated BTSE exchange: a websockets server that speaks the specs, knows the ground
truth and breaks on purpose. See :class:`~collector.simulator.server.Simulator`."""

from collector.simulator.faults import FAULT_KINDS, Fault, FaultSpecError, parse_fault
from collector.simulator.server import DEFAULT_SYMBOLS, Simulator
from collector.simulator.session import sign
from collector.simulator.truth import TrueBook, TrueTrade, Truth, TruthError

__all__ = [
    "DEFAULT_SYMBOLS",
    "FAULT_KINDS",
    "Fault",
    "FaultSpecError",
    "Simulator",
    "TrueBook",
    "TrueTrade",
    "Truth",
    "TruthError",
    "parse_fault",
    "sign",
]
