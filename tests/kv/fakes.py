"""Test doubles for the KV layer (MicroPython-safe): a consensus that commits at once."""

from roost.node.effects import APPLY


class InstantConsensus:
    """Stands in for PaxosCore in unit tests: when leader, a proposal commits and applies
    immediately; otherwise propose() says no and leader_hint() names ``hint``."""

    def __init__(self, sm, leader=True, hint=None):
        self.sm = sm
        self.leader = leader
        self.hint = hint
        self.on_apply = None
        self.index = 0
        self.held = []  # proposals parked by hold=True, committed later by release()
        self.hold = False
        self.handled = []

    def is_leader(self):
        return self.leader

    def leader_hint(self):
        return self.hint

    def propose(self, now_ms, command):
        if not self.leader:
            return False, []
        if self.hold:
            self.held.append(command)
            return True, []
        return True, self._commit(command)

    def release(self):
        out = []
        for c in self.held:
            out.extend(self._commit(c))
        self.held = []
        return out

    def _commit(self, command):
        self.index += 1
        result = self.sm.apply(self.index, command)
        if self.on_apply is not None:
            self.on_apply(self.index, command, result)
        return [(APPLY, self.index, command)]

    def handle(self, now_ms, env):
        self.handled.append(env.kind)
        return []

    def tick(self, now_ms):
        return []

    def next_deadline_ms(self):
        return None
