"""The rendezvous of the processes of a job at ``--dist-url``.

The rendezvous of spawned workers at a ``tcp://`` URL has its own short timeout
(`DEFAULT_RENDEZVOUS_TIMEOUT`, 60 s, or ``SNIPER_RENDEZVOUS_TIMEOUT`` seconds; the
``--rendezvous-timeout`` flag): a machine that cannot reach machine 0 (or a machine 0 whose
peers never come) stops with one line naming the URL instead of waiting for the 30-minute
collective timeout (`RendezvousError`, a `ConfigError`).
"""

from __future__ import annotations

import os
import socket
import time
from datetime import timedelta
from urllib.parse import urlparse

import torch.distributed as dist

from sniper.cli_errors import ConfigError

__all__ = [
    "DEFAULT_RENDEZVOUS_TIMEOUT",
    "RENDEZVOUS_ENV",
    "RendezvousError",
    "find_free_port",
    "init_tcp_group",
    "rendezvous_timeout_from_env",
    "wait_for_machine_zero",
]

DEFAULT_RENDEZVOUS_TIMEOUT = timedelta(seconds=60)
RENDEZVOUS_ENV = "SNIPER_RENDEZVOUS_TIMEOUT"  # seconds; overrides the default


class RendezvousError(ConfigError):
    """The processes of the job could not meet at ``--dist-url`` within the timeout."""


def rendezvous_timeout_from_env(default: timedelta = DEFAULT_RENDEZVOUS_TIMEOUT) -> timedelta:
    """``SNIPER_RENDEZVOUS_TIMEOUT`` seconds if set, else ``default``.

    Raises:
        ConfigError: the variable is not a number > 0.
    """
    text = os.environ.get(RENDEZVOUS_ENV, "")
    if not text:
        return default
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds < 1e7:
        raise ConfigError(f"environment variable {RENDEZVOUS_ENV}={text!r}: must be seconds > 0")
    return timedelta(seconds=seconds)


def find_free_port() -> int:
    """A TCP port that was free on localhost a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_machine_zero(dist_url: str, machine_rank: int, timeout: timedelta) -> None:
    """Wait until the ``tcp://HOST:PORT`` rendezvous of machine 0 accepts a connection
    (checked before spawning, so an unreachable URL is one error in this process).

    Raises:
        RendezvousError: nothing accepted a connection there within ``timeout``.
    """
    url = urlparse(dist_url)
    limit = timeout.total_seconds()
    deadline = time.monotonic() + limit
    while True:
        left = deadline - time.monotonic()
        try:
            with socket.create_connection((url.hostname, url.port), timeout=max(0.1, min(left, 2))):
                return
        except OSError:
            if left <= 0:
                raise RendezvousError(
                    f"--dist-url {dist_url}: machine {machine_rank} could not reach machine 0 "
                    f"within {limit:g} s; start machine 0 first, check the host and port, or "
                    f"wait longer with --rendezvous-timeout SECONDS or {RENDEZVOUS_ENV}"
                ) from None
            time.sleep(min(0.5, max(left, 0.0)))


def init_tcp_group(
    backend: str,
    dist_url: str,
    world_size: int,
    rank: int,
    timeout: timedelta,
    rendezvous_timeout: timedelta,
) -> None:
    """`init_process_group` at ``dist_url``; a ``tcp://`` rendezvous waits at most
    ``rendezvous_timeout`` (its TCPStore, rank 0 serving it), collectives ``timeout``.

    Raises:
        RendezvousError: the store could not be reached or opened, or not every process
            joined in time; the message names the URL, the rank and the wait.
    """
    url = urlparse(dist_url)
    if url.scheme != "tcp":
        dist.init_process_group(
            backend=backend, init_method=dist_url, world_size=world_size, rank=rank, timeout=timeout
        )
        return
    start = time.monotonic()
    try:
        store = dist.TCPStore(
            url.hostname or "",
            int(url.port or 0),
            world_size,
            rank == 0,
            timeout=rendezvous_timeout,
            multi_tenant=True,
        )
    except (RuntimeError, ValueError, OSError) as err:
        waited = time.monotonic() - start
        limit = rendezvous_timeout.total_seconds()
        more = f"wait longer with --rendezvous-timeout SECONDS or {RENDEZVOUS_ENV}"
        if waited < 0.9 * limit:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            why = f"rank {rank} could not open the rendezvous after {waited:.0f} s: {first}"
        elif rank == 0:
            why = (
                f"rank 0 waited {limit:g} s for the {world_size} processes of the job to join; "
                f"start every machine (--machine-rank 1..N-1) or {more}"
            )
        else:
            why = (
                f"rank {rank} could not reach machine 0 within {limit:g} s; start machine 0 "
                f"first, check the host and port, or {more}"
            )
        raise RendezvousError(f"--dist-url {dist_url}: {why}") from None
    store.set_timeout(timeout)
    dist.init_process_group(
        backend=backend, store=store, world_size=world_size, rank=rank, timeout=timeout
    )
