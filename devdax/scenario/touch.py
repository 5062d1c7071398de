"""A one-byte load or store that survives SIGBUS and SIGSEGV, in this process, with the si_code.

Why not a forked child: a child has its own page tables and, for MADV_DONTFORK ranges, no vma at all,
so what it sees after a fault is not what the process that ran the scenario would see (the page-table
levels an earlier fault left behind decide the next fault's size). Why not process_vm_readv: that is a
get_user_pages walk, not a CPU fault, and turns both signals into one EFAULT.

So the access is done the way the kernel's own uaccess does it: a fixed instruction that may fault,
and a fixup. :data:`_CODE` is 20 bytes of x86-64 machine code (the assembly is beside each byte
string) and a SIGBUS/SIGSEGV handler, installed with SA_SIGINFO, that recognises a fault at exactly
those instructions, stores ``1 << 32 | signo << 16 | si_code`` in the saved RAX and moves the saved
RIP to a ``ret``. A fault anywhere else hits ``ud2`` and kills the process, as it should.

Only stdlib and ctypes: this module runs inside a TCG guest, where every import costs.
"""

from __future__ import annotations

import ctypes
import os
import signal
import struct
from typing import Final

FAULTED: Final = 1 << 32
SIGNAL_NAMES: Final[dict[int, str]] = {int(signal.SIGBUS): "SIGBUS", int(signal.SIGSEGV): "SIGSEGV"}
#: include/uapi/asm-generic/siginfo.h
SI_CODES: Final[dict[tuple[int, int], str]] = {
    (signal.SIGBUS, 1): "BUS_ADRALN",
    (signal.SIGBUS, 2): "BUS_ADRERR",
    (signal.SIGBUS, 3): "BUS_OBJERR",
    (signal.SIGBUS, 4): "BUS_MCEERR_AR",
    (signal.SIGBUS, 5): "BUS_MCEERR_AO",
    (signal.SIGSEGV, 1): "SEGV_MAPERR",
    (signal.SIGSEGV, 2): "SEGV_ACCERR",
    (signal.SIGSEGV, 4): "SEGV_PKUERR",
}

# touch(rdi = addr, esi = write, edx = value) -> rax: the byte read or written, or the fault word
_TOUCH: Final = bytes.fromhex(
    "31c0"  # 0x00 xor eax, eax
    "85f6"  # 0x02 test esi, esi
    "7504"  # 0x04 jne 0x0a
    "0fb607"  # 0x06 movzx eax, byte [rdi]      <- may fault (load)
    "c3"  # 0x09 ret
    "8817"  # 0x0a mov byte [rdi], dl         <- may fault (store)
    "0fb6c2"  # 0x0c movzx eax, dl
    "c3"  # 0x0f ret                        <- the fixup lands here
)
_FAULT_LO, _FAULT_HI, _FIXUP = 0x06, 0x0C, 0x0F
_HANDLER_AT: Final = 0x10


def _handler(start: int, end: int, fixup: int) -> bytes:
    """handler(edi = signo, rsi = siginfo_t *, rdx = ucontext_t *): the fixup for faults in _TOUCH.

    glibc x86-64 ucontext_t: uc_mcontext.gregs at 40, REG_RAX = 13 (0x90), REG_RIP = 16 (0xa8);
    siginfo_t.si_code at 8.
    """
    q = struct.Struct("<Q").pack
    return b"".join(
        (
            bytes.fromhex("488b8aa8000000"),  # mov rcx, [rdx + 0xa8]        saved rip
            bytes.fromhex("49b8") + q(start),  # movabs r8, start
            bytes.fromhex("4c39c1"),  # cmp rcx, r8
            bytes.fromhex("7238"),  # jb ud2
            bytes.fromhex("49b8") + q(end),  # movabs r8, end
            bytes.fromhex("4c39c1"),  # cmp rcx, r8
            bytes.fromhex("7329"),  # jae ud2
            bytes.fromhex("8b4608"),  # mov eax, [rsi + 8]           si_code
            bytes.fromhex("0fb7c0"),  # movzx eax, ax
            bytes.fromhex("c1e710"),  # shl edi, 16
            bytes.fromhex("09f8"),  # or eax, edi
            bytes.fromhex("480fbae820"),  # bts rax, 32
            bytes.fromhex("48898290000000"),  # mov [rdx + 0x90], rax        saved rax
            bytes.fromhex("48b8") + q(fixup),  # movabs rax, fixup
            bytes.fromhex("488982a8000000"),  # mov [rdx + 0xa8], rax        saved rip
            bytes.fromhex("c3"),  # ret (through glibc's sa_restorer: rt_sigreturn)
            bytes.fromhex("0f0b"),  # ud2: a fault we did not expect
        )
    )


class _Sigaction(ctypes.Structure):
    # glibc's struct sigaction on x86-64 (the wrapper adds SA_RESTORER itself)
    _fields_ = [
        ("handler", ctypes.c_void_p),
        ("mask", ctypes.c_ubyte * 128),
        ("flags", ctypes.c_int),
        ("restorer", ctypes.c_void_p),
    ]


_SA_SIGINFO: Final = 4
_touch_fn: ctypes._CFuncPtr | None = None  # type: ignore[name-defined]


def _install() -> ctypes._CFuncPtr:  # type: ignore[name-defined]
    """Map the code once per process, make it executable, and point SIGBUS/SIGSEGV at the handler."""
    global _touch_fn
    if _touch_fn is not None:
        return _touch_fn
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [
        ctypes.c_void_p,
        ctypes.c_size_t,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_long,
    ]
    page = os.sysconf("SC_PAGE_SIZE")
    base = libc.mmap(None, page, 0x3, 0x22, -1, 0)  # PROT_READ|WRITE, MAP_PRIVATE|ANONYMOUS
    if base in (None, ctypes.c_void_p(-1).value):
        raise OSError(ctypes.get_errno(), "mmap for the touch code")
    code = _TOUCH.ljust(_HANDLER_AT, b"\xcc") + _handler(base + _FAULT_LO, base + _FAULT_HI, base + _FIXUP)
    ctypes.memmove(base, code, len(code))
    if libc.mprotect(ctypes.c_void_p(base), ctypes.c_size_t(page), 0x5) != 0:  # PROT_READ|EXEC
        raise OSError(ctypes.get_errno(), "mprotect for the touch code")
    act = _Sigaction(handler=base + _HANDLER_AT, flags=_SA_SIGINFO)
    for sig in SIGNAL_NAMES:
        if libc.sigaction(sig, ctypes.byref(act), None) != 0:
            raise OSError(ctypes.get_errno(), "sigaction")
    _touch_fn = ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.c_void_p, ctypes.c_int, ctypes.c_int)(base)
    return _touch_fn


def access(addr: int, write: bool, value: int = 0) -> int:
    """One byte at ``addr``: the byte (0..255), or ``FAULTED | signo << 16 | si_code``."""
    fn = _install()
    return int(fn(addr, int(write), value & 0xFF))


def describe(word: int) -> tuple[str, str]:
    """A fault word -> (outcome, detail): ('SIGBUS', 'BUS_ADRERR')."""
    sig, code = (word >> 16) & 0xFFFF, word & 0xFFFF
    return SIGNAL_NAMES.get(sig, f"SIG{sig}"), SI_CODES.get((sig, code), f"si_code {code}")
