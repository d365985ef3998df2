"""A network namespace joined to ours by a link whose faults a test sets: delay, jitter, loss, a cut.

Why not ``tc qdisc ... netem``: the kernels these tests run on (Firecracker guests) are built
without ``CONFIG_NET_SCH_NETEM`` ("Specified qdisc kind is unknown"), and nothing else built in
holds packets for a set time (HTB and TBF only shape the rate). So the link is two TUN devices,
one here and one in the namespace, and a thread that copies IP packets between them as netem
would: each packet, in each direction, is held for ``delay`` +- a uniform ``jitter`` (so packets
may be reordered), dropped with probability ``loss``, or dropped while the link is ``cut``. TCP
on both ends sees a real lossy, slow path.

Addresses are loopback-range (127.x.y.1 here, 127.x.y.2 in the namespace, a point-to-point
pair): ``route_localnet=1`` on both devices lets 127/8 leave a device other than ``lo``, and the
/32 peer routes beat the 127.0.0.0/8 local route (longest prefix wins).
"""

from __future__ import annotations

import fcntl
import heapq
import ipaddress
import itertools
import os
import random
import select
import shutil
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

_TUNSETIFF = 0x400454CA
_IFF_TUN = 0x0001
_IFF_NO_PI = 0x1000
_counter = itertools.count()


def netns_usable() -> str | None:
    """Why these tests cannot make a namespace here (None: they can)."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if not all(shutil.which(tool) for tool in ("ip", "sysctl")):
        return "needs iproute2 (ip) and sysctl"
    if not os.path.exists("/dev/net/tun"):
        return "needs /dev/net/tun"
    return None


def _run(*args: str, ns: str | None = None) -> None:
    command = [*(["ip", "netns", "exec", ns] if ns else []), *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)}: {done.stderr.strip()}")


@dataclass(frozen=True)
class Faults:
    """What the link does to each packet, in each direction (as netem on both ends)."""

    delay_s: float = 0.0
    jitter_s: float = 0.0
    loss: float = 0.0
    """Probability that a packet is dropped."""
    cut: bool = False
    """Every packet is dropped (a cable pulled: no reset, no error, only silence)."""


def _open_tun(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    try:
        fcntl.ioctl(fd, _TUNSETIFF, struct.pack("16sH", name.encode(), _IFF_TUN | _IFF_NO_PI))
    except OSError:
        os.close(fd)
        raise
    return fd


class Link:
    """Copies packets between two TUN devices, applying :attr:`faults` (set it at any time)."""

    def __init__(self, here: int, there: int, seed: int = 0) -> None:
        self.faults = Faults()
        self.dropped = 0
        self._peer = {here: there, there: here}
        self._random = random.Random(seed)  # the same draws, in the same order, on every run
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._forward, name="netns-link", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _hold(self, now: float) -> float | None:
        """When a packet read now leaves, or None if it is dropped."""
        faults, rand = self.faults, self._random
        if faults.cut or (faults.loss and rand.random() < faults.loss):
            self.dropped += 1
            return None
        jitter = rand.uniform(-faults.jitter_s, faults.jitter_s) if faults.jitter_s else 0.0
        return now + max(0.0, faults.delay_s + jitter)

    def _forward(self) -> None:
        queue: list[tuple[float, int, int, bytes]] = []  # (leaves at, order, to fd, packet)
        order = itertools.count()
        fds = list(self._peer)
        while not self._stop.is_set():
            timeout = 0.05 if not queue else min(0.05, max(0.0, queue[0][0] - time.monotonic()))
            ready, _, _ = select.select(fds, [], [], timeout)
            now = time.monotonic()
            for fd in ready:
                while True:
                    try:
                        packet = os.read(fd, 65536)
                    except OSError:  # nothing more to read (or the device is gone)
                        break
                    leaves = self._hold(now)
                    if leaves is not None:
                        heapq.heappush(queue, (leaves, next(order), self._peer[fd], packet))
            now = time.monotonic()
            while queue and queue[0][0] <= now:
                _, _, fd, packet = heapq.heappop(queue)
                try:
                    os.write(fd, packet)
                except OSError:  # the device went down: the packet is lost, as on a wire
                    self.dropped += 1


@dataclass(frozen=True)
class Namespace:
    """A namespace and the addresses at either end of its link."""

    name: str
    here: str
    """Our end's address (the root namespace)."""
    there: str
    """The namespace's address."""
    link: Link

    def command(self, *args: str) -> list[str]:
        """``args`` as a command run inside the namespace."""
        return ["ip", "netns", "exec", self.name, *args]


@contextmanager
def namespace() -> Iterator[Namespace]:
    """A fresh namespace (``lg-PID-N``) joined by a :class:`Link`; everything is removed after."""
    n = next(_counter)
    pid = os.getpid()
    name, dev_here, dev_there = f"lg-{pid}-{n}", f"lg{pid}x{n}h", f"lg{pid}x{n}t"
    # a /30 of 127.64.0.0/10 per (process, namespace): no clash with another test run on the host
    first = ipaddress.IPv4Address("127.64.0.0") + ((pid * 8 + n) % (1 << 20)) * 4
    here, there = str(first + 1), str(first + 2)
    fds: list[int] = []
    link: Link | None = None
    _run("ip", "netns", "add", name)
    try:
        fds.append(_open_tun(dev_here))  # one at a time: the first is closed if the second fails
        fds.append(_open_tun(dev_there))
        _run("ip", "link", "set", dev_there, "netns", name)
        for ns, dev, local, peer in ((None, dev_here, here, there), (name, dev_there, there, here)):
            _run("sysctl", "-qw", f"net.ipv4.conf.{dev}.route_localnet=1", ns=ns)
            _run("ip", "addr", "add", local, "peer", peer, "dev", dev, ns=ns)
            _run("ip", "link", "set", dev, "up", ns=ns)
        _run("ip", "link", "set", "lo", "up", ns=name)
        link = Link(fds[0], fds[1])
        link.start()
        yield Namespace(name, here, there, link)
    finally:
        if link is not None:
            link.stop()
        for fd in fds:  # a TUN device without its file goes away, in either namespace
            os.close(fd)
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10, check=False)
