"""KvClient: leader finding, retries with the same seq, backoff, unknown outcomes, history.
MicroPython-safe."""

from roost.node.effects import EVENT
from roost.node.kv import OP_CAS, OP_PUT, ST_ERROR, ST_NOT_LEADER, ST_OK, ST_RETRY
from tests.kv.fakes_client import World


def test_ok_reply_records_history():
    w = World()
    reqs = w.sent(w.client.submit(1000, "put", "k", value="v"))
    assert len(reqs) == 1 and reqs[0][1][1:] == [OP_PUT, "k", "v", None]
    assert w.client.busy()
    dst, body = reqs[0]
    effs = w.reply(1012, dst, [body[0], ST_OK, None, None])
    assert not w.client.busy()
    assert [e[1] for e in effs if e[0] == EVENT] == ["kv.op"]
    rec = w.client.history[-1]
    assert rec == {"client": "c1", "op": "put", "key": "k", "value": "v",
                   "call": 1.0, "return": 1.012, "ok": True}
    # the next operation goes straight to the replica that answered, with a new seq
    reqs2 = w.sent(w.client.submit(1020, "cas", "k", old=None, new="x"))
    assert reqs2[0][0] == dst and reqs2[0][1][0] == body[0] + 1
    assert reqs2[0][1][1:] == [OP_CAS, "k", None, "x"]
    w.reply(1030, dst, [body[0] + 1, ST_OK, False, None])
    rec = w.client.history[-1]
    assert rec["ok"] is True and rec["output"] is False and rec["old"] is None


def test_not_leader_hint_is_followed_with_the_same_seq():
    w = World()
    (dst, body), = w.sent(w.client.submit(0, "get", "k"))
    hint = "n2" if dst != "n2" else "n3"
    (dst2, body2), = w.sent(w.reply(1, dst, [body[0], ST_NOT_LEADER, None, hint]))
    assert dst2 == hint and body2 == body
    w.reply(3, hint, [body[0], ST_OK, "val", None])
    assert w.client.history[-1]["output"] == "val"
    assert w.client.stats["redirects"] == 1


def test_timeouts_back_off_and_end_unknown():
    w = World(attempt_timeout_ms=100, backoff_base_ms=10, backoff_max_ms=80, op_timeout_ms=2000)
    c = w.client
    reqs = w.sent(c.submit(0, "append", "log", value="x;"))
    seqs = {reqs[0][1][0]}
    targets = [reqs[0][0]]
    now = 0
    pauses = []
    for _ in range(200):  # bounded: the client gives up at 2000 ms
        d = c.next_deadline_ms()
        if d is None:
            break
        assert d > now or d == c._give_up_at
        prev = now
        now = d
        effs = c.tick(now)
        for dst, body in w.sent(effs):
            seqs.add(body[0])
            targets.append(dst)
            pauses.append(now - prev)
    assert not c.busy()
    assert len(seqs) == 1  # every retry re-sent the same (client, seq)
    assert len(set(targets)) == 3  # round-robin over the replicas
    assert all(5 <= p <= 80 for p in pauses)
    assert max(pauses) > min(pauses)  # exponential growth up to the cap
    rec = c.history[-1]
    assert rec["ok"] is None and rec["return"] is None and rec["call"] == 0.0
    assert c.stats["unknown"] == 1
    # a late answer to the abandoned operation changes nothing
    w.reply(now + 5, targets[0], [reqs[0][1][0], ST_OK, None, None])
    assert len(c.history) == 1 and c.history[-1]["ok"] is None


def test_error_is_definite_failure_and_retry_resends():
    w = World(backoff_base_ms=10)
    (dst, body), = w.sent(w.client.submit(0, "put", "k", value="v"))
    assert w.sent(w.reply(1, dst, [body[0], ST_RETRY, None, None])) == []
    d = w.client.next_deadline_ms()
    assert 1 <= d - 1 <= 10
    (dst2, body2), = w.sent(w.client.tick(d))
    assert body2 == body
    w.reply(d + 1, dst2, [body[0], ST_ERROR, "too_large", None])
    rec = w.client.history[-1]
    assert rec["ok"] is False and rec["return"] is not None


def test_expired_goes_again_above_the_floor_unless_an_attempt_went_unanswered():
    """The store forgot c1 (too many clients since) and refused its request with the floor
    of forgotten seqs: a request answered at every attempt never applied, so it goes again
    with a seq above the floor; one that timed out once may have applied: unknown."""
    w = World()
    (dst, body), = w.sent(w.client.submit(0, "put", "k", value="v"))
    floor = body[0] + 500
    (dst2, body2), = w.sent(w.reply(1, dst, [body[0], ST_ERROR, "expired", floor]))
    assert dst2 == dst and body2 == [floor + 1] + body[1:]
    w.reply(2, dst, [floor + 1, ST_OK, None, None])
    assert w.client.history[-1]["ok"] is True and w.client.stats["rebased"] == 1
    (dst, body), = w.sent(w.client.submit(3, "get", "k"))
    assert body[0] == floor + 2  # the next operation goes on from there
    w.reply(4, dst, [body[0], ST_OK, "v", None])
    # unanswered once: it may have applied before the store forgot the client
    (dst, body), = w.sent(w.client.submit(10, "put", "k", value="w"))
    w.sent(w.client.tick(w.client.next_deadline_ms()))  # the reply wait ends
    (dst, _), = w.sent(w.client.tick(w.client.next_deadline_ms()))  # the retry goes out
    assert w.sent(w.reply(500, dst, [body[0], ST_ERROR, "expired", body[0] + 9])) == []
    assert w.client.history[-1]["ok"] is None and w.client.stats["rebased"] == 1


def test_a_busy_retry_leaves_expired_a_rebase_not_an_unknown():
    """'busy': the replica did not propose the request (its queue was full), so a later
    'expired' still means it never applied: the client goes again above the floor."""
    w = World(backoff_base_ms=10)
    (dst, body), = w.sent(w.client.submit(0, "put", "k", value="v"))
    assert w.sent(w.reply(1, dst, [body[0], ST_RETRY, "busy", None])) == []
    (dst, _), = w.sent(w.client.tick(w.client.next_deadline_ms()))
    (_, again), = w.sent(w.reply(30, dst, [body[0], ST_ERROR, "expired", body[0] + 9]))
    assert again[0] == body[0] + 10 and w.client.stats["rebased"] == 1
