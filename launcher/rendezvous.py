"""Rendezvous over the store: which nodes form the next attempt, and when the current one ends.

Keys live under `rdzv/<run_id>/`. Attempts are numbered rounds; `round` holds the current one.
An agent joins round r by `add(r/joined)` (its arrival index k) and publishes its node info at
`r/node/k`. The round closes — `compare_set(r/closed, "", n)` by whichever agent sees the
condition first — when `max_nodes` joined, or `min_nodes` joined and `last_call` seconds passed
without the round filling up. Members are arrivals 0..n-1, ordered by `--node-rank` when given.

While running, agents beat `r/alive/k`; a restart of the whole group is bumping `round` to r+1:
a failing agent does it (and charges the shared restart counter once), a joining agent does it
when the closed round has room, and any agent does it when a peer's beat goes stale (its agent
died). Every agent watches `round` and re-rendezvouses when it moves.
"""
import os
import socket
import time
from dataclasses import dataclass

import msgpack

from ..distributed.store import StoreError


class RendezvousError(RuntimeError):
    """The job cannot (re)form: it was shut down, or not enough nodes joined in time."""


@dataclass(frozen=True)
class Assignment:
    """This node's place in one attempt."""
    round: int
    group_rank: int
    nnodes: int
    world_size: int
    rank_offset: int             # global rank of this node's local rank 0
    restart_count: int           # failure restarts before this attempt, job-wide
    store_endpoint: str
    store_token: str
    master_addr: str
    master_port: int


@dataclass
class RendezvousConfig:
    min_nodes: int = 1
    max_nodes: int = 1
    join_timeout: float = 600.0      # wait this long for min_nodes
    last_call: float = 2.0           # after min_nodes joined, wait this long for more
    node_timeout: float = 10.0       # a peer agent silent this long counts as gone
    beat_interval: float = 0.25


class StoreRendezvous:
    def __init__(self, store, run_id, nproc_per_node, config, node_rank=None,
                 host=None, clock=time.monotonic, sleep=time.sleep, serves_store=False):
        self.store, self.config = store, config
        self.serves_store = serves_store     # the store lives in this agent's process
        self.nproc, self.node_rank = nproc_per_node, node_rank
        self.host = host or socket.gethostname()
        self.clock, self.sleep = clock, sleep
        self.prefix = f"rdzv/{run_id}"
        self.current = None              # the Assignment we run in
        self._index = None               # our arrival index in the current round
        self._peers = {}                 # arrival index -> (last beat value, when it changed)
        self._next_beat = 0.0
        self._beats = 0

    def _key(self, *parts):
        return "/".join((self.prefix, *map(str, parts)))

    def _round(self):
        return self.store.add(self._key("round"), 0)

    def _get_now(self, key):
        return self.store.get(key) if self.store.check([key]) else None

    def _check_shutdown(self):
        reason = self._get_now(self._key("shutdown"))
        if reason is not None:
            raise RendezvousError(f"the job was shut down: {reason.decode()}")

    # -- forming a round ----------------------------------------------------------------------
    def next_round(self):
        """Block until this node is a member of a closed round; return its Assignment."""
        cfg = self.config
        deadline = self.clock() + cfg.join_timeout
        while True:
            self._check_shutdown()
            r = self._round()
            closed = self._get_now(self._key(r, "closed"))
            if closed is not None:
                # The round started without us: ask for a new one if it has room, else wait.
                if int(closed) < cfg.max_nodes:
                    self.store.compare_set(self._key("round"), str(r), str(r + 1))
                else:
                    self._wait_for_round_change(r, deadline)
                continue
            k = self.store.add(self._key(r, "joined"), 1) - 1
            self.store.set(self._key(r, "node", k), msgpack.packb(
                {"host": self.host, "nproc": self.nproc, "node_rank": self.node_rank,
                 "pid": os.getpid()}))
            members = self._wait_until_closed(r, deadline)
            if members is None or k >= members:
                continue                     # the round moved on, or closed before we arrived
            return self._assign(r, k, members)

    def _wait_until_closed(self, r, deadline):
        cfg = self.config
        min_reached_at = None
        while True:
            closed = self._get_now(self._key(r, "closed"))
            if closed is not None:
                return int(closed)
            if self._round() != r:
                return None
            joined = self.store.add(self._key(r, "joined"), 0)
            now = self.clock()
            if joined >= cfg.min_nodes and min_reached_at is None:
                min_reached_at = now
            if joined >= cfg.max_nodes or (min_reached_at is not None
                                           and now - min_reached_at >= cfg.last_call):
                self.store.compare_set(self._key(r, "closed"), "", str(min(joined, cfg.max_nodes)))
                continue
            if now > deadline:
                raise RendezvousError(
                    f"rendezvous round {r} timed out after {cfg.join_timeout:g} s with {joined} "
                    f"of at least {cfg.min_nodes} node(s) joined; start the other nodes' "
                    f"`phalanx run` with the same --rdzv-endpoint and --rdzv-id")
            self.sleep(0.02)

    def _wait_for_round_change(self, r, deadline):
        while self._round() == r:
            self._check_shutdown()
            if self.clock() > deadline:
                raise RendezvousError(f"the job is full ({self.config.max_nodes} nodes) and did "
                                      f"not restart within {self.config.join_timeout:g} s")
            self.sleep(0.1)

    def _assign(self, r, k, members):
        infos = [msgpack.unpackb(self.store.get(self._key(r, "node", i))) for i in range(members)]
        order = sorted(range(members), key=lambda i: (
            infos[i]["node_rank"] if infos[i]["node_rank"] is not None else members + i, i))
        group_rank = order.index(k)
        offset = sum(infos[i]["nproc"] for i in order[:group_rank])
        endpoint = self.store.endpoint
        addr, port = endpoint.split("://", 1)[-1].rsplit(":", 1)
        self._index, self._peers = k, {i: (None, self.clock()) for i in range(members) if i != k}
        self._next_beat = 0.0
        self.current = Assignment(
            round=r, group_rank=group_rank, nnodes=members,
            world_size=sum(info["nproc"] for info in infos), rank_offset=offset,
            restart_count=self.store.add(self._key("restarts"), 0),
            store_endpoint=endpoint, store_token=self.store.token,
            master_addr=addr, master_port=int(port))
        return self.current

    # -- while running ------------------------------------------------------------------------
    def restart_reason(self):
        """Why the running group must restart now (a peer failed, joined or left), or None."""
        now = self.clock()
        if now < self._next_beat:
            return None
        self._next_beat = now + self.config.beat_interval
        r = self.current.round
        try:
            self._beats += 1
            self.store.set(self._key(r, "alive", self._index), str(self._beats))
            if self._round() != r:
                return "the group is restarting (a node failed, joined or left)"
            done = set(self.store.keys(self._key(r, "done", "")))
            for i, (value, since) in list(self._peers.items()):
                if self._key(r, "done", i) in done:
                    continue
                beat = self._get_now(self._key(r, "alive", i))
                if beat != value:
                    self._peers[i] = (beat, now)
                elif now - since > self.config.node_timeout:
                    self.store.compare_set(self._key("round"), str(r), str(r + 1))
                    return (f"node {i} sent no heartbeat for {self.config.node_timeout:g} s "
                            f"(its agent died?)")
        except StoreError as e:
            raise RendezvousError(f"lost the rendezvous store: {e}") from e
        return None

    def report_failure(self):
        """Restart everyone; returns the job-wide failure-restart count after this one."""
        r = self.current.round
        if self.store.add(self._key(r, "failed"), 1) == 1:     # charge each failed round once
            self.store.add(self._key("restarts"), 1)
        self.store.compare_set(self._key("round"), str(r), str(r + 1))
        return self.store.add(self._key("restarts"), 0)

    def report_success(self, timeout=300.0):
        """Mark this node done, wait (bounded) for the other members, then leave in an order
        that strands nobody: every agent's last store call sets its `left` key, and the agent
        that serves the store waits for every other member's before it returns (and the store
        closes). Waiting for "done" keys alone let the store close under a peer whose last call
        was still in flight."""
        r = self.current.round
        self.store.set(self._key(r, "done", self._index), b"1")
        deadline = self.clock() + timeout
        if not self._all_members(r, "done", deadline):
            return
        self.store.set(self._key(r, "left", self._index), b"1")
        if self.serves_store:
            self._all_members(r, "left", deadline)

    def _all_members(self, r, what, deadline):
        """Wait until every member of round r set its `what` key; False when the deadline
        passed, the round moved on or the job was shut down first."""
        while self.clock() < deadline:
            if len(self.store.keys(self._key(r, what, ""))) >= self.current.nnodes:
                return True
            if self._round() != r or self.store.check([self._key("shutdown")]):
                return False
            self.sleep(0.05)
        return False

    def shutdown(self, reason):
        """Stop the whole job: every agent's next rendezvous fails with `reason`."""
        try:   # briefly: a signalled agent must exit even when the store is unreachable
            self.store.set(self._key("shutdown"), reason, timeout=2.0)
            if self.current is not None:
                r = self.current.round
                self.store.compare_set(self._key("round"), str(r), str(r + 1), timeout=2.0)
        except StoreError:
            pass
